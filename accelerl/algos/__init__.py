"""Off-policy algorithms over any actor/critic that take (window, mask), and behaviour cloning."""

from accelerl.algos.base import OffPolicy, evaluating
from accelerl.algos.bc import Distiller
from accelerl.algos.sac import SAC
from accelerl.algos.td3 import TD3

__all__ = ["SAC", "TD3", "Distiller", "OffPolicy", "evaluating", "make_algo"]


def make_algo(name: str, actor, critic, cfg, **kwargs) -> OffPolicy:
    return {"td3": TD3, "sac": SAC}[name](actor, critic, cfg, **kwargs)
