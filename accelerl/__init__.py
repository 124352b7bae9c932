"""accelerl: transformer policies trained online with the Accelerator method (arXiv 2509.26137)."""

__version__ = "0.1.0"

from accelerl.config import TrainConfig, build_config  # noqa: E402
from accelerl.policy import Policy, load_policy  # noqa: E402

__all__ = ["__version__", "TrainConfig", "build_config", "Policy", "load_policy"]
