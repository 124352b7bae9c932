"""Vector envs as the collector and evaluation read them: device tensors in, device tensors out.

Two kinds of vector env reach training. Gymnasium's (sync or async) step numpy envs on the host:
their outputs cross to the device in one host-to-device copy per step. ManiSkill's GPU simulator
steps N sub-envs in one scene and speaks torch on the device: ``BatchedEnv`` wraps its
``ManiSkillVectorEnv`` so observations, rewards and flags stay there, and only the few values the
host must branch on (which envs ended, the rewards for episode returns, success) come back, in one
small device-to-host copy per step.

Episode ends follow the MDP, as on the CPU path: a success (or failure) terminates the episode and
is not bootstrapped; the time limit truncates it and is bootstrapped from the true final
observation. In ManiSkill's terms: ``ignore_terminations=False`` with partial resets of the envs
that ended, and a TD target that bootstraps on truncations only.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from accelerl.errors import ConfigError
from accelerl.replay import as_obs_tensor


@dataclass
class DeviceStep:
    """One vector step. ``obs`` already starts the next episode where an env ended."""

    obs: torch.Tensor  # [N, D] float32 on the device
    rew: torch.Tensor  # [N] float32
    term: torch.Tensor  # [N] float32, 1 where the episode terminated
    trunc: torch.Tensor  # [N] float32, 1 where it hit the time limit
    ended: np.ndarray  # [N] bool on the host: term | trunc
    rew_host: np.ndarray  # [N] float64 on the host (episode returns)
    final_obs: torch.Tensor | None  # [E, D] true final observations of the E envs that ended, in env order
    success: np.ndarray | None  # [N] bool: the step's success flag (None: the task reports none)


def uses_gpu_sim(cfg, device: torch.device) -> bool:
    """Whether a run's training envs are one batched env on ManiSkill's GPU simulator."""
    if not cfg.maniskill:
        return False
    if cfg.sim_backend == "physx_cuda":
        if device.type != "cuda":
            raise ConfigError("--sim-backend physx_cuda (ManiSkill's GPU simulator) needs CUDA, and no CUDA device "
                              "is available; use --sim-backend physx_cpu")
        return True
    return cfg.sim_backend == "auto" and device.type == "cuda"


def side_env_kind(cfg, device: torch.device) -> str:
    """The vector-env kind of a run's evaluation and teacher-rollout envs: batched on the GPU
    simulator like the training envs, else gymnasium's sync."""
    return "batched" if uses_gpu_sim(cfg, device) else "sync"


# ------------------------------------------------------------------------------------------ gymnasium
def _numpy_success(info: dict, ended: np.ndarray) -> np.ndarray | None:
    """The step's success flags from a gymnasium vector env's info (with SAME_STEP autoreset an
    ended env's step info moves to ``info['final_info']``)."""
    final_info = info.get("final_info") or {}
    if "success" not in info and "success" not in final_info:
        return None
    n = len(ended)
    success = np.zeros(n, dtype=bool)
    if "success" in info:
        success |= np.asarray(info["success"], dtype=bool) & np.asarray(info.get("_success", True), dtype=bool)
    if "success" in final_info:
        success = np.where(ended, np.asarray(final_info["success"], dtype=bool), success)
    return success


# One pinned staging buffer per vector env (CUDA only), reused every step.
_staging: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _to_device(array: np.ndarray, device: torch.device, owner: object) -> torch.Tensor:
    """``array`` on ``device``: on CUDA through a pinned buffer with a non-blocking copy. Reusing
    the buffer is safe because the next step's actions reach the host (``action.cpu()``, which
    waits for the stream) before the buffer is written again."""
    if device.type != "cuda":
        return torch.as_tensor(array, device=device)
    pinned = _staging.get(owner)
    if pinned is None or tuple(pinned.shape) != array.shape:
        pinned = torch.empty(array.shape, dtype=torch.float32).pin_memory()
        _staging[owner] = pinned
    pinned.numpy()[...] = array
    return pinned.to(device, non_blocking=True)


def _gym_step(envs: gym.vector.VectorEnv, action: torch.Tensor, device: torch.device) -> DeviceStep:
    next_obs, rew, term, trunc, info = envs.step(action.cpu().numpy())
    ended = term | trunc
    # One host->device copy for the step's outputs (observation, reward, flags).
    out = _to_device(np.concatenate([next_obs, np.stack([rew, term, trunc], 1)], 1, dtype=np.float32), device, envs)
    final_obs = None
    if ended.any():
        final_obs = as_obs_tensor(np.stack([info["final_obs"][i] for i in np.flatnonzero(ended)]), device)
    return DeviceStep(out[:, :-3], out[:, -3], out[:, -2], out[:, -1], ended, np.asarray(rew, dtype=np.float64),
                      final_obs, _numpy_success(info, ended))


def reset_envs(envs, seeds: list[int], device: torch.device) -> torch.Tensor:
    """First observations [N, D] of new episodes, one seed per env."""
    if isinstance(envs, BatchedEnv):
        return envs.reset(seeds)
    obs, _ = envs.reset(seed=seeds)
    return as_obs_tensor(obs, device)


def step_envs(envs, action: torch.Tensor, device: torch.device) -> DeviceStep:
    """Step every env with actions in [-1, 1] (a [N, A] tensor on the device)."""
    if isinstance(envs, BatchedEnv):
        return envs.step(action)
    return _gym_step(envs, action, device)


# ------------------------------------------------------------------------------------------- ManiSkill
class BatchedEnv:
    """A ``ManiSkillVectorEnv`` (or anything with its interface: torch tensors in and out, partial
    auto-resets, ``final_observation`` / ``final_info`` in the step's info) as N device-resident envs.

    ``keep`` selects the observation features the networks read (the ``--obs-mask``), after the
    frame when ``rgb``; actions arrive in [-1, 1] and are rescaled to ``low``..``high``.
    """

    def __init__(self, vec: Any, device: torch.device, low: tuple[float, ...], high: tuple[float, ...],
                 rgb: bool = False, keep: tuple[int, ...] | None = None) -> None:
        self.vec, self.device, self.rgb = vec, torch.device(device), rgb
        self.num_envs = int(vec.num_envs)
        self._low = torch.as_tensor(low, dtype=torch.float32, device=self.device)
        self._span = torch.as_tensor(high, dtype=torch.float32, device=self.device) - self._low
        self._keep = None if keep is None else torch.as_tensor(keep, dtype=torch.long, device=self.device)
        self._sim_device = getattr(vec, "device", self.device)

    def flat(self, obs: Any) -> torch.Tensor:
        """[N, D] float32 observations on the device: the base camera's frame (CHW-flattened,
        values 0..255) followed by the state, or the state alone."""
        state = (obs["state"] if self.rgb else obs).to(self.device, torch.float32)
        if self._keep is not None:
            state = state[:, self._keep]
        if not self.rgb:
            return state
        frame = obs["rgb"][..., :3].to(self.device).permute(0, 3, 1, 2).reshape(state.shape[0], -1)
        return torch.cat([frame.float(), state], dim=1)

    def reset(self, seeds: list[int]) -> torch.Tensor:
        if len(seeds) != self.num_envs:
            raise ValueError(f"one seed per env: got {len(seeds)} for {self.num_envs} envs")
        obs, _ = self.vec.reset(seed=list(seeds))
        return self.flat(obs)

    def step(self, action: torch.Tensor) -> DeviceStep:
        env_action = self._low + (action.to(self.device, torch.float32) + 1) * 0.5 * self._span
        obs, rew, term, trunc, info = self.vec.step(env_action.to(self._sim_device))
        rew = torch.as_tensor(rew, device=self.device).float().reshape(self.num_envs)
        term = torch.as_tensor(term, device=self.device).reshape(self.num_envs).float()
        trunc = torch.as_tensor(trunc, device=self.device).reshape(self.num_envs).float()
        # After an auto-reset, info is the reset's; the step's own info (every env's) is final_info.
        step_info = info["final_info"] if "final_info" in info else info
        success = step_info.get("success")
        columns = [rew, term, trunc]
        if success is not None:
            columns.append(torch.as_tensor(success, device=self.device).float().reshape(self.num_envs))
        host = torch.stack(columns, 1).cpu().numpy()  # the step's one device->host copy
        ended = (host[:, 1] + host[:, 2]) > 0
        final_obs = None
        if ended.any():
            if "final_observation" not in info:
                raise RuntimeError("the batched env ended episodes without info['final_observation'] "
                                   "(ManiSkillVectorEnv with auto_reset=True provides it)")
            idx = torch.as_tensor(np.flatnonzero(ended), device=self.device)
            final_obs = self.flat(info["final_observation"])[idx]
        return DeviceStep(self.flat(obs), rew, term, trunc, ended, host[:, 0].astype(np.float64),
                          final_obs, host[:, 3] > 0 if success is not None else None)

    def close(self) -> None:
        self.vec.close()


# The one place a real ManiSkill GPU env is built (tests replace it with a fake of the same interface).
def open_maniskill_vector(task: str, num_envs: int, obs: str, image_size: int, control_mode: str,
                          sim_backend: str) -> Any:
    from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv

    from accelerl.envs.maniskill import open_maniskill

    env = open_maniskill(task, obs, image_size, control_mode, sim_backend, num_envs)
    return ManiSkillVectorEnv(env, auto_reset=True, ignore_terminations=False, record_metrics=False)


def make_batched_env(spec, num_envs: int, device: torch.device, sim_backend: str = "physx_cuda") -> BatchedEnv:
    """N sub-envs of a ManiSkill task in one simulator, as a ``BatchedEnv``; N envs that do not fit
    the GPU's memory are one clear error, not a CUDA traceback."""
    from accelerl.envs.maniskill import PREFIX, gpu_memory_error

    task = spec.env_id[len(PREFIX):]
    try:
        vec = open_maniskill_vector(task, num_envs, "rgb" if spec.pixels else "state", spec.image_size or 64,
                                    spec.control_mode, sim_backend)
        env = BatchedEnv(vec, device, spec.action_low, spec.action_high, rgb=bool(spec.pixels), keep=spec.keep)
        env.reset(list(range(num_envs)))  # allocates the scene's buffers: fails here, not mid-run
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
        too_many = gpu_memory_error(exc, num_envs)
        if too_many is None:
            raise
        raise too_many from None
    return env
