"""A trained policy as a library object: load a run, act on raw observations, evaluate.

``Policy.predict`` keeps the context window itself, with the same padding and mask as training,
so a user feeds one observation at a time, as from ``env.step``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from accelerl import checkpoint
from accelerl.config import TrainConfig, read_run_config
from accelerl.envs import EnvSpec, make_single_env, make_vector_env, probe_for
from accelerl.errors import CheckpointError
from accelerl.evaluation import EvalResult, deterministic, run_episodes
from accelerl.nets import build_accelerator_actor, build_transformer_actor
from accelerl.replay import WindowTracker, as_obs_tensor

EVAL_BATCH = 16  # envs evaluated side by side


class Policy:
    def __init__(self, actor: torch.nn.Module, cfg: TrainConfig, spec: EnvSpec, device: torch.device) -> None:
        self.actor, self.cfg, self.spec, self.device = actor.eval(), cfg, spec, device
        self.context = cfg.window_len
        self._tracker: WindowTracker | None = None
        self._restart: np.ndarray | None = None  # batch entries whose episode starts at the next predict
        low, high = np.asarray(spec.action_low), np.asarray(spec.action_high)
        self._low, self._scale = low, (high - low) / 2.0

    def reset(self, envs: Sequence[int] | np.ndarray | None = None) -> None:
        """Call at the start of every episode. With a batch whose episodes end at different steps,
        ``envs`` (indices, or a bool mask as ``terminated | truncated``) names the entries that start
        a new episode at the next ``predict``; the others keep their windows (default: all)."""
        if envs is None or self._tracker is None:
            self._tracker, self._restart = None, None
            return
        n, envs = self._tracker.hist.shape[0], np.asarray(envs)
        if envs.dtype == bool:
            if envs.shape != (n,):
                raise ValueError(f"reset(envs): a mask of shape {envs.shape} for a batch of {n}")
            ended = envs
        else:
            if envs.size and (envs.min() < 0 or envs.max() >= n or not np.issubdtype(envs.dtype, np.integer)):
                raise ValueError(f"reset(envs): indices must be integers in [0, {n}), got {envs.tolist()}")
            ended = np.isin(np.arange(n), envs)
        self._restart = ended if self._restart is None else self._restart | ended

    @torch.inference_mode()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action, in the env's own action units, for a raw (unmasked) observation
        (or one from ``make_env()``) of the next step of the current episode; a batch [N, obs]
        acts for N episodes. A pixel policy takes ``make_env()``'s observations (frame, state)."""
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        obs = obs[None] if single else obs
        if self.spec.keep is not None and not self.spec.pixels and obs.shape[1] != self.spec.obs_dim:
            obs = obs[:, list(self.spec.keep)]
        if obs.shape[1] != self.spec.obs_dim:
            raise ValueError(f"observation has {obs.shape[1]} features; this policy takes {self.spec.obs_dim}"
                             + (" (use Policy.make_env() for its frames)" if self.spec.pixels else ""))
        x = as_obs_tensor(obs, self.device)
        if self._tracker is None or self._tracker.hist.shape[0] != len(obs):
            self._tracker = WindowTracker(len(obs), obs.shape[1:], self.context, self.device)
            self._tracker.reset(x)
        else:  # as in training: continuing episodes append, restarted ones begin with this observation
            self._tracker.step(x, self._restart if self._restart is not None else np.zeros(len(obs), bool))
        self._restart = None
        unit = self.actor.act(*self._tracker.window()).cpu().numpy()
        action = self._low + (unit + 1.0) * self._scale
        return action[0] if single else action

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """The task as this policy sees it (observations masked, or rendered frames) with actions
        in the env's own units, ready for ``predict``; needed for pixel policies."""
        return make_single_env(self.spec, rescale_actions=False, render_mode=render_mode)

    def evaluate(self, episodes: int = 10, seed: int = 12345, video: Path | None = None) -> EvalResult:
        """Deterministic episodes on seeds seed..seed+episodes-1 (one GIF of the first if ``video``),
        at most ``EVAL_BATCH`` envs at a time (a renderer each, for pixel and ManiSkill tasks)."""
        frames: list | None = [] if video is not None else None
        parts = []
        for start in range(0, episodes, EVAL_BATCH):
            n = min(EVAL_BATCH, episodes - start)
            env = make_vector_env(self.spec, n, render=video is not None and start == 0)
            try:
                parts.append(run_episodes(env, deterministic(self.actor), [seed + start + i for i in range(n)],
                                          self.context, self.device, frames=frames if start == 0 else None))
            finally:
                env.close()
        result = EvalResult.concat(parts)
        if video is not None and frames:
            from PIL import Image

            # Every other frame at 240 px keeps a 1000-step episode's GIF to a few MB.
            images = [Image.fromarray(f).resize((240, 240 * f.shape[0] // f.shape[1])) for f in frames[::2]]
            images[0].save(video, save_all=True, append_images=images[1:], duration=40, loop=0)
        return result


def policy_of(mode: str) -> str:
    """The policy a run of ``mode`` is for: the accelerator in --mode accelerator, else the transformer."""
    return "accelerator" if mode == "accelerator" else "transformer"


def load_policy(run_dir: str | Path, which: str = "transformer", checkpoint_name: str = "latest",
                device: str = "cpu", env=None) -> Policy:
    """A run's policy. ``env``: the callable a ``python:`` run was trained on (another process
    cannot know it; ids and entry points need nothing)."""
    run_dir = Path(run_dir)
    cfg = TrainConfig.from_dict(read_run_config(run_dir))
    if env is not None:
        from accelerl.envs.custom import adopt

        adopt(env, cfg.env)
    state = checkpoint.load(run_dir / "checkpoints" / f"{checkpoint_name}.pt")
    if which not in state["nets"]:
        have = ", ".join(k for k in state["nets"] if k != "critic")
        raise CheckpointError(f"this run has no {which} policy (it has: {have})")
    spec = probe_for(cfg)
    build = build_transformer_actor if which == "transformer" else build_accelerator_actor
    actor = build(cfg, spec)
    try:
        actor.load_state_dict(state["nets"][which])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint does not match the run's config: {str(exc).splitlines()[0]}") from None
    dev = torch.device(device)
    return Policy(actor.to(dev), cfg, spec, dev)
