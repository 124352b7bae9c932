"""Behaviour cloning of the transformer from the accelerator (stage 1).

Labels are the accelerator's *deterministic* action for the window's last observation. For SAC
the student also matches the teacher's log-std, so stage 2 starts with the teacher's amount of
exploration rather than an untrained one.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from accelerl.algos.base import evaluating
from accelerl.algos.steps import AdamStep, call, compile_step
from accelerl.nets.heads import GaussianActor


class Distiller:
    """``actor_ascent`` > 0 adds the TD3+BC-style term -lambda * Q(W, pi(W)) / mean|Q| on the
    accelerator's critic, so the student can improve on the teacher where the critic says so."""

    def __init__(self, student: nn.Module, teacher: nn.Module, lr: float, critic: nn.Module | None = None,
                 actor_ascent: float = 0.0, student_critic: nn.Module | None = None, compiled: bool = False) -> None:
        self.student, self.teacher = student, teacher
        self.critic, self.actor_ascent = critic, actor_ascent
        # Frozen parameters (a CNN copied from the accelerator) are left out.
        self.step = AdamStep.of(student, lr)
        self.gaussian = isinstance(student, GaussianActor)
        self.updates = 0
        # --critic transformer: a transformer critic regressed onto the accelerator's critic.
        self.student_critic = student_critic
        self.critic_step = AdamStep.of(student_critic, lr) if student_critic is not None else None
        # Eager, or one compiled graph each (see OffPolicy).
        device = next(student.parameters()).device
        self._update = self._runner(self._bc_update, self.step, compiled, device)
        self._update_critic = (self._runner(self._critic_bc_update, self.critic_step, compiled, device)
                               if self.critic_step is not None else None)

    @staticmethod
    def _runner(fn, step: AdamStep, compiled: bool, device: torch.device):
        if not compiled:
            return functools.partial(fn, AdamStep.eager)
        return compile_step(functools.partial(fn, AdamStep.functional), device, prepare=step.prepare)

    @property
    def opt(self) -> torch.optim.Adam:
        return self.step.opt

    @property
    def critic_opt(self) -> torch.optim.Adam | None:
        return self.critic_step.opt if self.critic_step is not None else None

    @torch.no_grad()
    def labels(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher targets: [B, A] actions (with log-stds appended for SAC)."""
        with evaluating(self.teacher):
            if self.gaussian:
                mean, log_std = self.teacher(window, mask)
                return torch.cat([torch.tanh(mean), log_std], dim=-1)
            return self.teacher(window, mask)

    def loss(self, window: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._loss(None, window, mask, labels)[0]

    def _loss(self, params, window: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
        if self.gaussian:
            mean, log_std = call(self.student, params, window, mask)
            action = torch.tanh(mean)
            act_dim = mean.shape[-1]
            loss = ((action - labels[:, :act_dim]).pow(2).sum(-1).mean()
                    + 0.1 * (log_std - labels[:, act_dim:]).pow(2).sum(-1).mean())
        else:
            action = call(self.student, params, window, mask)
            loss = (action - labels).pow(2).sum(-1).mean()
        if self.actor_ascent > 0 and self.critic is not None:
            q = self.critic.action_value(window, mask, action, both=False)
            loss = loss - self.actor_ascent * q.mean() / q.abs().mean().detach().clamp_min(1e-6)
        return loss, ()

    def _bc_update(self, optimize, window: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return optimize(self.step, self._loss, window, mask, labels)[0]

    def update(self, window: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self._update(window, mask, labels)
        self.updates += 1
        return loss

    def critic_loss(self, window: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Squared error of both student Q heads to the teacher critic's, at the given actions."""
        return self._critic_loss(None, window, mask, actions)[0]

    def _critic_loss(self, params, window: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor):
        with torch.no_grad():
            t1, t2 = self.critic(window, mask, actions)
        s1, s2 = call(self.student_critic, params, window, mask, actions)
        return (s1 - t1).pow(2).mean() + (s2 - t2).pow(2).mean(), ()

    def _critic_bc_update(self, optimize, window, mask, actions) -> torch.Tensor:
        return optimize(self.critic_step, self._critic_loss, window, mask, actions)[0]

    def update_critic(self, window: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                      behaviour: torch.Tensor | None = None) -> torch.Tensor:
        """One step on the teacher's own actions (what stage-2 TD targets query first) and, when
        given, the stored behaviour actions (the spread of actions around them)."""
        act_dim = labels.shape[-1] // 2 if self.gaussian else labels.shape[-1]
        actions = labels[:, :act_dim]
        if behaviour is not None:
            window, mask = torch.cat([window, window]), torch.cat([mask, mask])
            actions = torch.cat([actions, behaviour])
        with evaluating(self.critic):  # the teacher critic without dropout
            return self._update_critic(window, mask, actions)

    def state_dict(self) -> dict:
        return {"opt": self.step.state_dict(), "updates": self.updates,
                "critic_opt": self.critic_step.state_dict() if self.critic_step is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.step.load_state_dict(state["opt"])
        self.updates = state["updates"]
        if self.critic_step is not None:
            self.critic_step.load_state_dict(state["critic_opt"])
