"""When to hand over from stage 1 to stage 2: the paper's open problem, as an explicit rule.

Switch at an evaluation when, for ``patience`` consecutive evaluations, the transformer has
reached ``ratio`` of the accelerator's progress over a random policy,
    (R_transformer - R_random) >= ratio * (R_accelerator - R_random),
the accelerator itself has learned something (floor), and the BC loss has plateaued (relative
improvement below ``plateau`` over the last ``window`` evaluations). Always switch at ``cap``.
Measuring progress from the random policy's return makes the ratio meaningful for tasks whose
returns are negative (Pendulum) or offset.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class SwitchRule:
    ratio: float = 0.9
    patience: int = 2
    plateau: float = 0.05
    cap: int = 500_000
    min_steps: int = 0
    window: int = 2
    random_return: float | None = None
    streak: int = 0
    bc_history: list[float] = field(default_factory=list)

    def bc_plateaued(self) -> bool:
        if len(self.bc_history) <= self.window:
            return False
        current, earlier = self.bc_history[-1], min(self.bc_history[-1 - self.window:-1])
        # Relative to |earlier|: with --bc-actor-ascent the loss can be negative.
        return earlier - current <= self.plateau * abs(earlier)

    def observe(self, step: int, acc_return: float, tr_return: float, bc_loss: float | None) -> tuple[bool, str]:
        """Record one evaluation; return (switch now?, why)."""
        if bc_loss is not None and math.isfinite(bc_loss):
            self.bc_history.append(bc_loss)
        base = self.random_return if self.random_return is not None else 0.0
        acc_gain, tr_gain = acc_return - base, tr_return - base
        learned = acc_gain > 0.1 * max(abs(base), 1.0)
        close = learned and tr_gain >= self.ratio * acc_gain
        self.streak = self.streak + 1 if close and step >= self.min_steps else 0
        if self.streak >= self.patience and self.bc_plateaued():
            share = tr_gain / acc_gain
            return True, (f"transformer at {share:.0%} of the accelerator's gain over random for {self.streak} "
                          f"evaluations and BC loss plateaued")
        if step >= self.cap:  # after the rule, so that the reason names the rule when both hold
            return True, f"reached the stage-1 cap of {self.cap} steps"
        return False, ""

    # What a run learns as it goes; the thresholds (and the cap, which follows --total-steps when
    # a resume changes it) come from the config the run is resumed with.
    STATE: ClassVar[tuple[str, ...]] = ("random_return", "streak", "bc_history")

    def state_dict(self) -> dict:
        return {key: copy.deepcopy(getattr(self, key)) for key in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for key in self.STATE:
            setattr(self, key, copy.deepcopy(state[key]))
