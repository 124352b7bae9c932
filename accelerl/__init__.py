"""accelerl: transformer policies trained online with the Accelerator method (arXiv 2509.26137)."""

__version__ = "0.1.0"

from accelerl.api import TrainResult, make_config, resume, train
from accelerl.callbacks import Callback, Event, StopOnReturn, SwitchWhen
from accelerl.config import TrainConfig, build_config
from accelerl.policy import Policy, load_policy

__all__ = [
    "Callback",
    "Event",
    "Policy",
    "StopOnReturn",
    "SwitchWhen",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "build_config",
    "load_policy",
    "make_config",
    "resume",
    "train",
]
