"""What TD3 and SAC share: targets, optimisers, Polyak averaging, compilation, (de)serialisation."""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator

import torch
from torch import nn

from accelerl.algos.steps import AdamStep, call, compile_step, mark_static, resolve_compile
from accelerl.replay import Batch


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Dropout off while acting or labelling; restores each submodule's previous mode.

    It sets the flag that ``Module.train`` sets, on the submodules in train mode only, without
    ``train``'s recursive walk and checked attribute writes: those cost about 0.35 ms per call
    for a small transformer actor on a 2-core CPU, at every env step and evaluation step."""
    switched = [sub for m in modules for sub in m.modules() if sub.training]
    for sub in switched:
        sub.__dict__["training"] = False
    try:
        yield
    finally:
        for sub in switched:
            sub.__dict__["training"] = True


def frozen_copy(module: nn.Module) -> nn.Module:
    """A target network: no gradients, always in eval mode (no dropout noise in targets)."""
    target = copy.deepcopy(module).requires_grad_(False)
    return target.eval()


@torch.no_grad()
def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


class OffPolicy:
    """An actor-critic pair trained off-policy on windows. ``critic_target`` (and SAC's
    ``log_alpha``) may be handed over from another agent: stage 2 carries them over.

    Each update is a short list of steps (``_critic_update``, ``_actor_update``), each a plain
    function of tensors; with ``--compile on`` each is one compiled graph. The critic step hands
    its encoder features (detached) to the actor step. With ``--lstm-critic shared`` the actor
    loss reads Q through the critic's heads on them (the critic's encoder runs once per update);
    otherwise it encodes the windows again with the updated critic (``action_value``), as TD3 and
    SAC are usually written."""

    def __init__(self, actor: nn.Module, critic: nn.Module, cfg, critic_target: nn.Module | None = None) -> None:
        self.cfg = cfg
        self.actor = actor
        self.critic = critic
        self.critic_target = critic_target if critic_target is not None else frozen_copy(critic)
        self.updates = 0
        self.device = next(critic.parameters()).device
        self.compiled = resolve_compile(cfg.compile, self.device)
        self.reuse_features = cfg.lstm_critic == "shared"
        # A CNN actor reads its critic's encoder (DetachedEncoder): its loss encodes the windows once.
        inner = getattr(actor.encoder, "inner", None)
        self.actor_reads_critic = inner is not None and inner is critic.enc1
        self.reset_optimizers()
        self._steps: dict[str, object] = {}

    def reset_optimizers(self) -> None:
        self.actor_step = AdamStep.of(self.actor, self.cfg.actor_lr, exclude=self.critic)
        self.critic_step = AdamStep.of(self.critic, self.cfg.critic_lr)

    @property
    def actor_opt(self) -> torch.optim.Adam:
        return self.actor_step.opt

    @property
    def critic_opt(self) -> torch.optim.Adam:
        return self.critic_step.opt

    def _optim_steps(self) -> list[AdamStep]:
        return [self.actor_step, self.critic_step]

    def _target_modules(self) -> list[nn.Module]:
        return [self.critic_target]

    def _run(self, name: str, *args):
        """Call step ``name`` (``fn(optimize, *args)``) eagerly, or its compiled graph (compiled on
        first use, after any checkpoint was loaded)."""
        fn = getattr(self, name)
        if not self.compiled:
            return fn(AdamStep.eager, *args)
        if name not in self._steps:
            self._steps[name] = compile_step(functools.partial(fn, AdamStep.functional), self.device,
                                             prepare=self._prepare_compiled)
        return self._steps[name](*args)

    def _prepare_compiled(self) -> None:
        for step in self._optim_steps():
            step.prepare()
        mark_static([p for m in self._target_modules() for p in m.parameters()])

    def _critic_loss(self, params, batch: Batch, target: torch.Tensor):
        (q1, q2), feats = self._call_critic(params, batch)
        loss = (q1 - target).pow(2).mean() + (q2 - target).pow(2).mean()
        return loss, tuple(f.detach() for f in feats)

    def _actor_inputs(self, batch: Batch, feats):
        """(encoder features the actor acts on, or None: it encodes the windows itself; critic
        features its Q reads, or None: ``action_value`` encodes them). A CNN actor and its Q read
        one augmented view (DrQ), encoded once; with --lstm-critic shared, Q reads the critic
        step's features."""
        if self.actor_reads_critic:
            with torch.no_grad():
                view = self.critic.enc1(batch.obs, batch.mask)
            return view, (view, view)
        return None, feats if self.reuse_features else None

    def _actor_q(self, batch: Batch, feats, action: torch.Tensor, both: bool):
        """Q of the actor's action, with gradients for the action only (see the class docstring)."""
        if feats is not None:
            return self.critic.heads(feats, action, both)
        return self.critic.action_value(batch.obs, batch.mask, action, both)

    def _call_critic(self, params, batch: Batch):
        return call(self.critic, params, batch.obs, batch.mask, batch.act, with_features=True)

    @torch.no_grad()
    def explore(self, window: torch.Tensor, mask: torch.Tensor, actor: nn.Module | None = None) -> torch.Tensor:
        """The exploring action of ``actor`` (default: this agent's actor) for N envs' windows, in
        eval mode (no dropout); with --compile, this agent's actor acts through one compiled graph."""
        actor = actor if actor is not None else self.actor
        with evaluating(actor):
            if not self.compiled or actor is not self.actor:
                return self.exploring_action(actor, window, mask)
            if "explore" not in self._steps:
                self._steps["explore"] = compile_step(self._explore_own, self.device)
            return self._steps["explore"](window, mask)

    def _explore_own(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.exploring_action(self.actor, window, mask)

    # subclasses: exploring_action(actor, window, mask) -> action; update(batch) -> dict of detached losses
    def exploring_action(self, actor: nn.Module, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_step.state_dict(),
            "critic_opt": self.critic_step.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_step.load_state_dict(state["actor_opt"])
        self.critic_step.load_state_dict(state["critic_opt"])
        self.updates = state["updates"]
        self._steps.clear()  # compiled steps hold the optimiser state tensors they were traced with
