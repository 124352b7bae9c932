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
    """``actor_ascent`` > 0 adds the TD3+BC-style term -lambda * Q(W, pi(W)) / mean|Q| on the
    accelerator's critic, so the student can improve on the teacher where the critic says so."""

    def __init__(self, student: nn.Module, teacher: nn.Module, lr: float, critic: nn.Module | None = None,
                 actor_ascent: float = 0.0) -> None:
        self.student, self.teacher = student, teacher
        self.critic, self.actor_ascent = critic, actor_ascent
        # Frozen parameters (a CNN copied from the accelerator) are left out.
        self.opt = adam([p for p in student.parameters() if p.requires_grad], lr)
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
            action = torch.tanh(mean)
            act_dim = mean.shape[-1]
            loss = ((action - labels[:, :act_dim]).pow(2).sum(-1).mean()
                    + 0.1 * (log_std - labels[:, act_dim:]).pow(2).sum(-1).mean())
        else:
            action = self.student(window, mask)
            loss = (action - labels).pow(2).sum(-1).mean()
        if self.actor_ascent > 0 and self.critic is not None:
            q, _ = self.critic(window, mask, action)
            loss = loss - self.actor_ascent * q.mean() / q.abs().mean().detach().clamp_min(1e-6)
        return loss

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
