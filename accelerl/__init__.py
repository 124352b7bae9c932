"""accelerl: transformer policies trained online with the Accelerator method (arXiv 2509.26137)."""

__version__ = "0.1.0"

from accelerl.config import TrainConfig, build_config
from accelerl.policy import Policy, load_policy

__all__ = ["Policy", "TrainConfig", "__version__", "build_config", "load_policy"]
