"""Collection: training envs -> acting windows -> replay.

The data path of training, kept apart from learning so it can be read (and changed) on its
own: the vector env steps, the WindowTracker turns observations into the windows every policy
reads, and each step lands in the current ReplayBuffer. The Collector does not know which
network acts; the caller hands it acting functions, so stage 1, stage 2 and the baselines share
one step.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

import numpy as np
import torch

from accelerl.config import TrainConfig
from accelerl.envs import get_env_state, make_vector_env, set_env_state
from accelerl.envs.batched import BatchedEnv, reset_envs, step_envs, uses_gpu_sim
from accelerl.errors import ConfigError
from accelerl.evaluation import training_seeds
from accelerl.replay import ReplayBuffer, WindowTracker

# What a batched GPU env checkpoints in place of its simulator state (which ManiSkill cannot hand out).
_BATCHED_STATE = b"accelerl:batched-env:episodes-restart-on-resume"

Act = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (window, mask) -> action in [-1, 1]


def check_replay_fits(cfg: TrainConfig, spec) -> None:
    """Refuse a replay buffer that cannot fit in this machine's memory, before allocating it."""
    row = spec.pixel_dims + 4 * (spec.state_dim + spec.act_dim + 1) + 12  # frame + floats + flags, ep_step
    need = row * max(cfg.buffer_size, cfg.stage2_buffer_size)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.8 * have:
        raise ConfigError(f"a replay of {max(cfg.buffer_size, cfg.stage2_buffer_size)} transitions needs "
                          f"{need / 2**30:.1f} GiB, more than this machine's {have / 2**30:.1f} GiB allows; "
                          "lower --buffer-size")


class Collector:
    """Owns the training envs, their acting windows, the current replay buffer, the env-step
    counter, episode returns and (with --bc-data dagger) which envs the transformer drives."""

    def __init__(self, cfg: TrainConfig, spec, device: torch.device, gen: torch.Generator) -> None:
        self.cfg, self.spec, self.device, self.gen = cfg, spec, device, gen
        self.num_envs, self.act_dim = cfg.num_envs, spec.act_dim
        # ManiSkill's GPU simulator batches the envs itself; otherwise gymnasium's sync/async vector env.
        self.vector_kind = "batched" if uses_gpu_sim(cfg, device) else cfg.vector_env
        self.envs = make_vector_env(spec, cfg.num_envs, kind=self.vector_kind, device=device)  # the training envs
        self.restarted_episodes = False  # set by a resume that could not restore the envs' simulator state
        self.buffer = self.new_buffer(cfg.buffer_size)
        self.tracker = WindowTracker(cfg.num_envs, (spec.obs_dim,), cfg.window_len, device)
        self.env_step = 0
        self.ep_return = np.zeros(cfg.num_envs)
        self.train_returns: deque[float] = deque(maxlen=20)
        self.np_rng = np.random.default_rng(cfg.seed)  # DAgger episode assignment
        self.student_driven = np.zeros(cfg.num_envs, dtype=bool)  # envs whose episode the transformer acts
        self.student_steps = 0

    def new_buffer(self, capacity: int) -> ReplayBuffer:
        return ReplayBuffer(capacity, self.num_envs, (self.spec.obs_dim,), self.act_dim, self.device,
                            pixel_dims=self.spec.pixel_dims)

    def swap_buffer(self, capacity: int) -> ReplayBuffer:
        """Stage 2 collects into a fresh, smaller buffer; the old one is returned for the warm start."""
        old, self.buffer = self.buffer, self.new_buffer(capacity)
        return old

    def warm_start(self, old: ReplayBuffer, copy: bool) -> None:
        """Fill the stage-2 buffer with the last stage-1 transitions (``copy``), or at least carry
        over each env's step within its running episode (the ep_step of the next row)."""
        if copy:
            old.copy_recent_into(self.buffer)
        else:
            self.buffer._cur_step.copy_(old._cur_step)

    def reset(self) -> None:
        """First episodes of a fresh run, on the run's training seeds."""
        self.tracker.reset(reset_envs(self.envs, training_seeds(self.cfg.seed, self.num_envs), self.device))

    def env_state(self) -> bytes:
        """The envs' simulator state for a checkpoint (gymnasium envs: exact; GPU batched: none)."""
        return _BATCHED_STATE if isinstance(self.envs, BatchedEnv) else get_env_state(self.envs)

    def restore_env_state(self, blob: bytes) -> None:
        """Put the envs back where the checkpoint left them. ManiSkill's GPU simulator state cannot
        be saved (nor is GPU physics deterministic), so there, and across simulator kinds, each env
        starts a fresh episode instead: the replay keeps every stored transition, the one open
        transition of each env becomes a final row (its next observation was not stored), and the
        episodes in flight are not counted in the training returns."""
        if not isinstance(self.envs, BatchedEnv) and blob != _BATCHED_STATE:
            set_env_state(self.envs, blob)
            return
        seeds = [(self.cfg.seed * 1_000_003 + self.env_step + i) % 2**31 for i in range(self.num_envs)]
        self.tracker.reset(reset_envs(self.envs, seeds, self.device))
        self.buffer.cut_episodes()
        self.ep_return[:] = 0.0
        self.student_driven[:] = False
        self.restarted_episodes = True

    def step(self, act: Act | None, student_act: Act | None = None) -> None:
        """One vector step: act, step the envs, store, advance the windows and the returns.

        ``act=None`` draws uniform random actions (the warm-up before learning starts).
        ``student_act`` is the transformer's exploration, used in the envs DAgger gave it; None
        where DAgger is off (outside stage 1), which also hands every new episode back.
        """
        window, mask = self.tracker.window()
        if act is None:
            action = torch.rand(self.num_envs, self.act_dim, generator=self.gen, device=self.device) * 2 - 1
        else:
            with torch.inference_mode():
                action = act(window, mask)
                if self.student_driven.any():
                    # DAgger: the transformer acts in its episodes; the accelerator still labels.
                    student = student_act(window, mask)
                    driven = torch.as_tensor(self.student_driven, device=self.device)
                    action = torch.where(driven[:, None], student, action)
                self.student_steps += int(self.student_driven.sum())
        out = step_envs(self.envs, action, self.device)
        ended = out.ended
        self.buffer.add(window[:, -1], action, out.rew, out.term, out.trunc, ended, out.final_obs)
        self.tracker.step(out.obs, ended)
        self.ep_return += out.rew_host
        for i in np.flatnonzero(ended):
            self.train_returns.append(float(self.ep_return[i]))
            self.ep_return[i] = 0.0
        if self.cfg.bc_data == "dagger":
            self._assign_drivers(ended, student_act is not None)
        self.env_step += self.num_envs

    def _assign_drivers(self, ended: np.ndarray, dagger: bool) -> None:
        """Decide, per new episode, whether the transformer drives it (DAgger, stage 1 only)."""
        if not dagger or self.env_step < self.cfg.learning_starts:
            self.student_driven[:] = False
            return
        draws = self.np_rng.random(self.num_envs) < self.cfg.dagger_fraction
        self.student_driven = np.where(ended, draws, self.student_driven)

    def mean_train_return(self) -> float | str:
        """Mean return of the last 20 training episodes ('' before the first one ends)."""
        return float(np.mean(self.train_returns)) if self.train_returns else ""
