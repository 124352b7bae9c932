"""Behaviour cloning of the transformer from the accelerator (stage 1).

Labels are the accelerator's *deterministic* action for the window's last observation. For SAC
the student also matches the teacher's log-std, so stage 2 starts with the teacher's amount of
exploration rather than an untrained one.
"""

from __future__ import annotations

import torch
from torch import nn

from accelerl.algos.base import adam, evaluating
from accelerl.nets.heads import GaussianActor


class Distiller:
    def __init__(self, student: nn.Module, teacher: nn.Module, lr: float) -> None:
        self.student, self.teacher = student, teacher
        self.opt = adam(student.parameters(), lr)
        self.gaussian = isinstance(student, GaussianActor)
        self.updates = 0

    @torch.no_grad()
    def labels(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher targets: [B, A] actions (with log-stds appended for SAC)."""
        with evaluating(self.teacher):
            if self.gaussian:
                mean, log_std = self.teacher(window, mask)
                return torch.cat([torch.tanh(mean), log_std], dim=-1)
            return self.teacher(window, mask)

    def loss(self, window: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.gaussian:
            mean, log_std = self.student(window, mask)
            act_dim = mean.shape[-1]
            return ((torch.tanh(mean) - labels[:, :act_dim]).pow(2).sum(-1).mean()
                    + 0.1 * (log_std - labels[:, act_dim:]).pow(2).sum(-1).mean())
        return (self.student(window, mask) - labels).pow(2).sum(-1).mean()

    def update(self, window: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.loss(window, mask, labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.updates += 1
        return loss.detach()

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.updates = state["updates"]
