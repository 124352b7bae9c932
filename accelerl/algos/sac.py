"""SAC (Haarnoja et al., 2018) with twin critics and automatic entropy tuning."""

from __future__ import annotations

import math

import torch
from torch import nn

from accelerl.algos.base import OffPolicy, evaluating, polyak
from accelerl.algos.steps import AdamStep, call
from accelerl.replay import Batch


class SAC(OffPolicy):
    def __init__(self, actor: nn.Module, critic: nn.Module, cfg, critic_target: nn.Module | None = None,
                 log_alpha: torch.Tensor | None = None, *, act_dim: int) -> None:
        device = next(actor.parameters()).device
        if log_alpha is None:
            log_alpha = torch.tensor(math.log(cfg.init_alpha), device=device)
        # Carried over into stage 2 (the reference code reset alpha to 1 there).
        self.log_alpha = log_alpha.detach().clone().requires_grad_(True)
        self.target_entropy = -float(act_dim)  # the usual heuristic: -|A|
        super().__init__(actor, critic, cfg, critic_target)

    def reset_optimizers(self) -> None:
        super().reset_optimizers()
        self.alpha_step = AdamStep({"log_alpha": self.log_alpha}, self.cfg.alpha_lr)

    @property
    def alpha_opt(self) -> torch.optim.Adam:
        return self.alpha_step.opt

    def _optim_steps(self) -> list[AdamStep]:
        return [*super()._optim_steps(), self.alpha_step]

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def exploring_action(self, actor: nn.Module, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A sample of the squashed Gaussian."""
        return actor(window, mask, sample=True)[0]

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """Soft TD target; the actor is in eval mode here (``update``): no dropout or augmentation in
        the target's next action, like TD3's eval-mode actor target."""
        next_act, next_logp = self.actor.sample(batch.next_obs, batch.next_mask)
        q1_next, q2_next = self.critic_target(batch.next_obs, batch.next_mask, next_act)
        soft_v = torch.minimum(q1_next, q2_next) - self.alpha * next_logp
        return batch.rew + self.cfg.gamma * (1.0 - batch.term) * soft_v

    def _critic_update(self, optimize, batch: Batch):
        return optimize(self.critic_step, self._critic_loss, batch, self.td_target(batch))

    def _actor_loss(self, params, batch: Batch, feats):
        actor_feats, q_feats = self._actor_inputs(batch, feats)
        action, logp = call(self.actor, params, batch.obs, batch.mask, sample=True, features=actor_feats)
        q1, q2 = self._actor_q(batch, q_feats, action, both=True)
        return (self.alpha * logp - torch.minimum(q1, q2)).mean(), logp.detach()

    def _alpha_loss(self, params, logp: torch.Tensor):
        log_alpha = self.log_alpha if params is None else params["log_alpha"]
        return -(log_alpha * (logp + self.target_entropy)).mean(), ()

    def _actor_update(self, optimize, batch: Batch, feats):
        actor_loss, logp = optimize(self.actor_step, self._actor_loss, batch, feats)
        optimize(self.alpha_step, self._alpha_loss, logp)
        polyak(self.critic_target, self.critic, self.cfg.tau)
        return actor_loss

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        alpha = self.alpha
        with evaluating(self.actor):
            critic_loss, feats = self._run("_critic_update", batch)
        actor_loss = self._run("_actor_update", batch, feats)
        self.updates += 1
        return {"critic_loss": critic_loss, "actor_loss": actor_loss, "alpha": alpha}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "log_alpha": self.log_alpha.detach().clone(),
                "alpha_opt": self.alpha_step.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha_step.load_state_dict(state["alpha_opt"])
