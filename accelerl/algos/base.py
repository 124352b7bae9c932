"""What TD3 and SAC share: targets, optimisers, Polyak averaging, (de)serialisation."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from accelerl.replay import Batch


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Dropout off while acting or labelling; restores each module's previous mode."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A target network: no gradients, always in eval mode (no dropout noise in targets)."""
    target = copy.deepcopy(module).requires_grad_(False)
    return target.eval()


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (CPU and CUDA): one kernel for all parameters."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def own_parameters(module: nn.Module, owner: nn.Module) -> list[nn.Parameter]:
    """``module``'s parameters that are not ``owner``'s: a CNN actor reads its critic's encoder
    but must not train it (the critic's optimiser does)."""
    theirs = {id(p) for p in owner.parameters()}
    return [p for p in module.parameters() if id(p) not in theirs]


@torch.no_grad()
def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    t_params = [p for p in target.parameters()]
    s_params = [p for p in source.parameters()]
    torch._foreach_lerp_(t_params, s_params, tau)


class OffPolicy:
    """An actor-critic pair trained off-policy on windows. ``critic_target`` (and SAC's
    ``log_alpha``) may be handed over from another agent: stage 2 carries them over."""

    def __init__(self, actor: nn.Module, critic: nn.Module, cfg, critic_target: nn.Module | None = None) -> None:
        self.cfg = cfg
        self.actor = actor
        self.critic = critic
        self.critic_target = critic_target if critic_target is not None else frozen_copy(critic)
        self.updates = 0
        self.reset_optimizers()

    def reset_optimizers(self) -> None:
        self.actor_opt = adam(own_parameters(self.actor, self.critic), self.cfg.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), self.cfg.critic_lr)

    def _critic_step(self, batch: Batch, target: torch.Tensor) -> torch.Tensor:
        q1, q2 = self.critic(batch.obs, batch.mask, batch.act)
        loss = (q1 - target).pow(2).mean() + (q2 - target).pow(2).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        return loss.detach()

    def _actor_step(self, loss: torch.Tensor) -> None:
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()

    # subclasses: explore(window, mask) -> action; update(batch) -> dict of detached losses
    def explore(self, window: torch.Tensor, mask: torch.Tensor, actor: nn.Module | None = None) -> torch.Tensor:
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates = state["updates"]
