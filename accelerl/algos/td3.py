"""TD3 (Fujimoto et al., 2018): twin critics, delayed actor updates, target policy smoothing."""

from __future__ import annotations

import torch
from torch import nn

from accelerl.algos.base import OffPolicy, evaluating, frozen_copy, polyak
from accelerl.replay import Batch


class TD3(OffPolicy):
    def __init__(self, actor: nn.Module, critic: nn.Module, cfg, critic_target: nn.Module | None = None,
                 **_: object) -> None:
        super().__init__(actor, critic, cfg, critic_target)
        self.actor_target = frozen_copy(actor)

    @torch.no_grad()
    def explore(self, window: torch.Tensor, mask: torch.Tensor, actor: nn.Module | None = None) -> torch.Tensor:
        """Deterministic action plus Gaussian noise, of ``actor`` (default: this agent's actor).
        Exploration noise in every stage: the reference code forgot it in stage 2."""
        actor = actor if actor is not None else self.actor
        with evaluating(actor):
            action = actor(window, mask)
        noise = torch.randn_like(action) * self.cfg.exploration_noise
        return (action + noise).clamp(-1.0, 1.0)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        with torch.no_grad():
            noise = (torch.randn_like(batch.act) * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            next_act = (self.actor_target(batch.next_obs, batch.next_mask) + noise).clamp(-1.0, 1.0)
            q1_next, q2_next = self.critic_target(batch.next_obs, batch.next_mask, next_act)
            # Bootstrap unless the episode *terminated*; truncation (time limit) bootstraps.
            target = batch.rew + cfg.gamma * (1.0 - batch.term) * torch.minimum(q1_next, q2_next)
        out = {"critic_loss": self._critic_step(batch, target)}
        self.updates += 1
        if self.updates % cfg.policy_delay == 0:
            q1 = self.critic.action_value(batch.obs, batch.mask, self.actor(batch.obs, batch.mask), both=False)
            actor_loss = -q1.mean()
            self._actor_step(actor_loss)
            polyak(self.critic_target, self.critic, cfg.tau)
            polyak(self.actor_target, self.actor, cfg.tau)
            out["actor_loss"] = actor_loss.detach()
        return out

    def state_dict(self) -> dict:
        return {**super().state_dict(), "actor_target": self.actor_target.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.actor_target.load_state_dict(state["actor_target"])
