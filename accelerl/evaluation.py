"""Deterministic evaluation of a policy on fresh seeds, with the acting path of training."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from accelerl.algos.base import evaluating
from accelerl.envs.batched import BatchedEnv, reset_envs, step_envs
from accelerl.replay import WindowTracker

ActFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray
    success_once: np.ndarray | None = None  # per episode, for tasks that report info["success"]
    success_at_end: np.ndarray | None = None

    @classmethod
    def concat(cls, parts: list[EvalResult]) -> EvalResult:
        def cat(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return cls(cat("returns"), cat("lengths"), cat("success_once"), cat("success_at_end"))

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())

    def as_dict(self) -> dict[str, float]:
        return {"return_mean": self.mean, "return_std": self.std, "return_min": float(self.returns.min()),
                "return_max": float(self.returns.max()), "ep_len_mean": float(self.lengths.mean()),
                "episodes": len(self.returns),
                **({"success_once": float(self.success_once.mean()), "success_at_end": float(self.success_at_end.mean())}
                   if self.success_once is not None else {})}


def run_episodes(env: gym.vector.VectorEnv | BatchedEnv, act: ActFn, seeds: list[int], context: int, device: torch.device,
                 frames: list | None = None, windows: list | None = None) -> EvalResult:
    """One episode per sub-env, reset with ``seeds`` (one per env); envs that finish are ignored
    until all have finished. A gymnasium vector env seeds each sub-env with its own seed; ManiSkill's
    GPU simulator draws every sub-env's initial state from one stream seeded by ``seeds[0]``, so
    there the batch, not each env, is what the seeds reproduce. ``act`` maps (window, mask) to
    actions in [-1, 1]. ``windows`` collects the (window, mask) of every step of every episode
    (teacher rollouts for BC)."""
    n = env.num_envs
    if len(seeds) != n:
        raise ValueError("one seed per env")
    obs = reset_envs(env, seeds, device)
    tracker = WindowTracker(n, obs.shape[1:], context, device)
    tracker.reset(obs)
    returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    success_once, success_at_end, reports_success = np.zeros(n, bool), np.zeros(n, bool), False
    active = np.ones(n, dtype=bool)
    while active.any():
        window, mask = tracker.window()
        if windows is not None:
            live = torch.as_tensor(active, device=device)
            windows.append((window[live].clone(), mask[live].clone()))
        with torch.inference_mode():
            action = act(window, mask)
        out = step_envs(env, action, device)
        if frames is not None and active[0]:  # (a vector env made with render=True)
            frames.append(env.envs[0].get_wrapper_attr("step_frame"))
        returns += out.rew_host * active
        lengths += active
        done = out.ended
        if out.success is not None:
            reports_success = True
            success = out.success & active
            success_once |= success
            success_at_end = np.where(active & done, success, success_at_end)
        active &= ~done
        tracker.step(out.obs, done)
    if not reports_success:
        return EvalResult(returns, lengths)
    return EvalResult(returns, lengths, success_once, success_at_end)


def deterministic(actor: torch.nn.Module) -> ActFn:
    def act(window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with evaluating(actor):
            return actor.act(window, mask)

    return act


def uniform_random(act_dim: int, generator: torch.Generator, device: torch.device) -> ActFn:
    def act(window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.rand(window.shape[0], act_dim, generator=generator, device=device) * 2 - 1

    return act


# Episode seeds stay below 2**32: ManiSkill seeds numpy RandomStates with them, which refuse more.
SEED_SPACE = 2**32


def training_seeds(run_seed: int, num_envs: int) -> list[int]:
    """The first reset's seed of each training env (apart from evaluation's and the teachers')."""
    return [(run_seed * 1000 + i) % SEED_SPACE for i in range(num_envs)]


def eval_seeds(run_seed: int, round_index: int, episodes: int) -> list[int]:
    """Fresh, reproducible seeds for every evaluation round (never the training seed)."""
    base = 1_000_000 + run_seed * 100_003 + round_index * episodes
    return [(base + i) % SEED_SPACE for i in range(episodes)]


def teacher_seeds(run_seed: int, round_index: int, episodes: int) -> list[int]:
    """Fresh seeds for the accelerator's BC rollouts (``--bc-data rollouts``), disjoint from the
    training seeds and from every evaluation round's seeds (for run seeds up to about 12,000,
    above which they wrap into the 32-bit range every env accepts), and never negative."""
    base = 3_000_000_000 + run_seed * 100_003 + round_index * episodes
    return [(base + i) % SEED_SPACE for i in range(episodes)]
