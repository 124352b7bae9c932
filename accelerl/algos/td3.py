"""TD3 (Fujimoto et al., 2018): twin critics, delayed actor updates, target policy smoothing."""

from __future__ import annotations

import torch
from torch import nn

from accelerl.algos.base import OffPolicy, frozen_copy, polyak
from accelerl.algos.steps import call
from accelerl.replay import Batch


class TD3(OffPolicy):
    def __init__(self, actor: nn.Module, critic: nn.Module, cfg, critic_target: nn.Module | None = None,
                 **_: object) -> None:
        super().__init__(actor, critic, cfg, critic_target)
        self.actor_target = frozen_copy(actor)

    def _target_modules(self) -> list[nn.Module]:
        return [self.critic_target, self.actor_target]

    def exploring_action(self, actor: nn.Module, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Deterministic action plus Gaussian noise. Exploration noise in every stage: the reference
        code forgot it in stage 2."""
        action = actor(window, mask)
        noise = torch.randn_like(action) * self.cfg.exploration_noise
        return (action + noise).clamp(-1.0, 1.0)

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        cfg = self.cfg
        noise = (torch.randn_like(batch.act) * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
        next_act = (self.actor_target(batch.next_obs, batch.next_mask) + noise).clamp(-1.0, 1.0)
        q1_next, q2_next = self.critic_target(batch.next_obs, batch.next_mask, next_act)
        # Bootstrap unless the episode *terminated*; truncation (time limit) bootstraps.
        return batch.rew + cfg.gamma * (1.0 - batch.term) * torch.minimum(q1_next, q2_next)

    def _critic_update(self, optimize, batch: Batch):
        return optimize(self.critic_step, self._critic_loss, batch, self.td_target(batch))

    def _actor_loss(self, params, batch: Batch, feats):
        actor_feats, q_feats = self._actor_inputs(batch, feats)
        action = call(self.actor, params, batch.obs, batch.mask, features=actor_feats)
        return -self._actor_q(batch, q_feats, action, both=False).mean(), ()

    def _actor_update(self, optimize, batch: Batch, feats):
        actor_loss, _ = optimize(self.actor_step, self._actor_loss, batch, feats)
        polyak(self.critic_target, self.critic, self.cfg.tau)
        polyak(self.actor_target, self.actor, self.cfg.tau)
        return actor_loss

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        critic_loss, feats = self._run("_critic_update", batch)
        out = {"critic_loss": critic_loss}
        self.updates += 1
        if self.updates % self.cfg.policy_delay == 0:
            out["actor_loss"] = self._run("_actor_update", batch, feats)
        return out

    def state_dict(self) -> dict:
        return {**super().state_dict(), "actor_target": self.actor_target.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.actor_target.load_state_dict(state["actor_target"])
