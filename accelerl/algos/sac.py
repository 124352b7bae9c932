"""SAC (Haarnoja et al., 2018) with twin critics and automatic entropy tuning."""

from __future__ import annotations

import math

import torch
from torch import nn

from accelerl.algos.base import OffPolicy, adam, evaluating, polyak
from accelerl.replay import Batch


class SAC(OffPolicy):
    def __init__(self, actor: nn.Module, critic: nn.Module, cfg, critic_target: nn.Module | None = None,
                 log_alpha: torch.Tensor | None = None, act_dim: int | None = None) -> None:
        device = next(actor.parameters()).device
        if log_alpha is None:
            log_alpha = torch.tensor(math.log(cfg.init_alpha), device=device)
        # Carried over into stage 2 (the reference code reset alpha to 1 there).
        self.log_alpha = log_alpha.detach().clone().requires_grad_(True)
        self.target_entropy = -float(act_dim if act_dim is not None else 1)
        super().__init__(actor, critic, cfg, critic_target)

    def reset_optimizers(self) -> None:
        super().reset_optimizers()
        self.alpha_opt = adam([self.log_alpha], self.cfg.alpha_lr)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def explore(self, window: torch.Tensor, mask: torch.Tensor, actor: nn.Module | None = None) -> torch.Tensor:
        """A sample of the squashed Gaussian of ``actor`` (default: this agent's actor)."""
        actor = actor if actor is not None else self.actor
        with evaluating(actor):
            action, _ = actor.sample(window, mask)
        return action

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg, alpha = self.cfg, self.alpha
        # The target's next action without dropout or augmentation, like TD3's eval-mode actor target.
        with torch.no_grad(), evaluating(self.actor):
            next_act, next_logp = self.actor.sample(batch.next_obs, batch.next_mask)
            q1_next, q2_next = self.critic_target(batch.next_obs, batch.next_mask, next_act)
            soft_v = torch.minimum(q1_next, q2_next) - alpha * next_logp
            target = batch.rew + cfg.gamma * (1.0 - batch.term) * soft_v
        critic_loss = self._critic_step(batch, target)

        action, logp = self.actor.sample(batch.obs, batch.mask)
        q1, q2 = self.critic.action_value(batch.obs, batch.mask, action)
        actor_loss = (alpha * logp - torch.minimum(q1, q2)).mean()
        self._actor_step(actor_loss)

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        polyak(self.critic_target, self.critic, cfg.tau)
        self.updates += 1
        return {"critic_loss": critic_loss, "actor_loss": actor_loss.detach(), "alpha": alpha}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "log_alpha": self.log_alpha.detach().clone(),
                "alpha_opt": self.alpha_opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
