"""Build training/evaluation envs: gymnasium vector envs (sync or async) with actions rescaled to [-1, 1]."""

from __future__ import annotations

import functools
import multiprocessing
import os
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from accelerl.envs import batched
from accelerl.envs.batched import BatchedEnv, make_batched_env
from accelerl.envs.custom import is_python_env, make_gym
from accelerl.envs.maniskill import PREFIX, ManiSkillEnv, episode_limit, is_maniskill
from accelerl.envs.masks import resolve_mask
from accelerl.envs.pixels import PixelObservation, choose_gl_backend, make_pixel_env
from accelerl.envs.state import Snapshottable
from accelerl.errors import ConfigError

VECTOR_KINDS = ("sync", "async")
# MuJoCo's GL choice (see choose_gl_backend), handed to async workers explicitly: a forkserver
# worker forks from a server started earlier and would not see a later os.environ change.
_GL_VARS = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "MUJOCO_EGL_DEVICE_ID")


@dataclass(frozen=True)
class EnvSpec:
    """What the networks need to know about a task, after masking."""

    env_id: str
    obs_dim: int
    act_dim: int
    keep: tuple[int, ...] | None  # observation indices kept by --obs-mask (None = all)
    max_episode_steps: int | None
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    pixels: str | None = None  # None, "rgb" or "state+rgb"
    image_size: int = 0
    control_mode: str | None = None  # ManiSkill tasks only

    @property
    def pixel_shape(self) -> tuple[int, int, int] | None:
        """(channels, height, width) of the frame at the front of each observation, if any."""
        return (3, self.image_size, self.image_size) if self.pixels else None

    @property
    def pixel_dims(self) -> int:
        return 3 * self.image_size * self.image_size if self.pixels else 0

    @property
    def state_dim(self) -> int:
        """Non-pixel features of an observation (after masking)."""
        return self.obs_dim - self.pixel_dims


def probe_env(env_id: str, obs_mask: str | None, pixels: str | None = None, image_size: int = 64,
              obs: str = "state", control_mode: str = "pd_ee_delta_pos") -> EnvSpec:
    """Check that a task is usable by continuous-control RL and describe it."""
    if is_maniskill(env_id):
        return _probe_maniskill(env_id, obs_mask, obs, image_size, control_mode)
    if pixels:
        choose_gl_backend()
    env = make_gym(env_id)
    try:
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ConfigError(f"{env_id} has a {type(env.action_space).__name__} action space; accelerl needs a Box")
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
            raise ConfigError(f"{env_id} has a {type(space).__name__} observation space; accelerl trains on one flat Box "
                              "(wrap the env in gymnasium.wrappers.FlattenObservation)")
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ConfigError(f"{env_id} needs a flat Box observation (got {space}); image tasks: see --pixels")
        if not np.all(np.isfinite(env.action_space.low)) or not np.all(np.isfinite(env.action_space.high)):
            raise ConfigError(f"{env_id} has an unbounded action space")
        obs_dim = int(env.observation_space.shape[0])
        keep = None
        if obs_mask:
            structure = getattr(env.unwrapped, "observation_structure", None)
            keep = tuple(int(i) for i in resolve_mask(obs_mask, env_id, obs_dim, structure))
        state_dim = len(keep) if keep else obs_dim
        if pixels:
            probe = make_single_env(EnvSpec(env_id, 0, 0, keep, None, pixels=pixels, image_size=image_size))
            probe.reset(seed=0)  # renders one frame: fails here, not mid-run, if GL is broken
            probe.close()
            state_dim = state_dim if pixels == "state+rgb" else 0
        return EnvSpec(
            env_id=env_id,
            obs_dim=3 * image_size * image_size * bool(pixels) + state_dim,
            act_dim=int(env.action_space.shape[0]),
            keep=keep,
            max_episode_steps=env.spec.max_episode_steps if env.spec else None,
            action_low=tuple(float(x) for x in env.action_space.low),
            action_high=tuple(float(x) for x in env.action_space.high),
            pixels=pixels,
            image_size=image_size if pixels else 0,
        )
    finally:
        env.close()


def probe_for(cfg, device: torch.device | None = None) -> EnvSpec:
    """The task a ``TrainConfig`` describes. Given the run's device, a ManiSkill task is probed on
    the simulator the run will use: GPU PhysX can only be enabled before any other PhysX use in a
    process, so a CPU-simulated probe would make the GPU envs after it fail."""
    if is_maniskill(cfg.env):
        gpu = device is not None and batched.uses_gpu_sim(cfg, device)
        return _probe_maniskill(cfg.env, cfg.obs_mask, cfg.obs, cfg.image_size, cfg.control_mode,
                                "physx_cuda" if gpu else "physx_cpu")
    return probe_env(cfg.env, cfg.obs_mask, cfg.pixels, cfg.image_size, cfg.obs, cfg.control_mode)


def _probe_maniskill(env_id: str, obs_mask: str | None, obs: str, image_size: int, control_mode: str,
                     sim_backend: str = "physx_cpu") -> EnvSpec:
    """Read a ManiSkill task's spaces from one sub-env, through the same ``open_maniskill_vector``
    the GPU-batched training envs are built with."""
    vec = batched.open_maniskill_vector(env_id[len(PREFIX):], 1, obs, image_size, control_mode, sim_backend)
    try:
        first, _ = vec.reset(seed=0)
        state_dim = int((first["state"] if obs == "rgb" else first).shape[-1])
        pixel_dims = 3 * image_size * image_size if obs == "rgb" else 0
        keep = None
        if obs_mask:
            keep = tuple(int(i) for i in resolve_mask(obs_mask, env_id, state_dim, None))
        space = vec.single_action_space
        return EnvSpec(
            env_id=env_id, obs_dim=pixel_dims + (len(keep) if keep else state_dim),
            act_dim=int(space.shape[0]), keep=keep,
            max_episode_steps=episode_limit(vec),
            action_low=tuple(float(x) for x in space.low), action_high=tuple(float(x) for x in space.high),
            pixels="state+rgb" if obs == "rgb" else None, image_size=image_size if obs == "rgb" else 0,
            control_mode=control_mode,
        )
    finally:
        vec.close()


def _select(obs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return obs[keep]


def make_single_env(spec: EnvSpec, rescale_actions: bool = True, render_mode: str | None = None) -> gym.Env:
    """One env yielding the observations the networks read: masked state, or a rendered frame
    (+ state). Actions in [-1, 1] unless ``rescale_actions`` is False."""
    if is_maniskill(spec.env_id):
        env = ManiSkillEnv(spec.env_id[len(PREFIX):], "rgb" if spec.pixels else "state", spec.image_size or 64,
                           spec.control_mode, render_mode=render_mode)
    elif spec.pixels:
        env = make_pixel_env(spec.env_id, spec.image_size)
    else:
        env = make_gym(spec.env_id, render_mode=render_mode)
    if rescale_actions:
        ones = np.ones(env.action_space.shape, dtype=np.float32)
        env = gym.wrappers.RescaleAction(env, -ones, ones)
    if spec.keep is not None and is_maniskill(spec.env_id) and spec.pixels:
        # the mask selects among the state features that follow the frame
        keep = np.concatenate([np.arange(spec.pixel_dims), spec.pixel_dims + np.asarray(spec.keep)])
        space = gym.spaces.Box(-np.inf, np.inf, (len(keep),), np.float32)
        env = gym.wrappers.TransformObservation(env, functools.partial(_select, keep=keep), space)
    elif spec.keep is not None:
        keep = np.asarray(spec.keep)
        low, high = env.observation_space.low[keep], env.observation_space.high[keep]
        space = gym.spaces.Box(low=low, high=high, dtype=env.observation_space.dtype)
        env = gym.wrappers.TransformObservation(env, functools.partial(_select, keep=keep), space)
    if spec.pixels and not is_maniskill(spec.env_id):
        env = PixelObservation(env, spec.image_size, with_state=spec.pixels == "state+rgb")
    return env


class StepFrame(gym.Wrapper):
    """Renders right after each step, into ``step_frame``: in a vector env that resets an ended
    episode within the same step, rendering afterwards would show the next episode's first
    state instead of the terminal one (the last frame of an ``eval --video`` GIF)."""

    step_frame: np.ndarray | None = None

    def step(self, action):
        out = self.env.step(action)
        self.step_frame = self.env.render()
        return out


def _vector_member(spec: EnvSpec, render_mode: str | None, gl: tuple[tuple[str, str], ...]) -> gym.Env:
    """One env of a vector env. Module-level (with picklable arguments) so that async workers can
    build it; the Snapshottable layer lets ``get_env_state`` reach it in whichever process it lives."""
    for key, value in gl:
        os.environ[key] = value
    env = make_single_env(spec, render_mode=render_mode)
    return Snapshottable(StepFrame(env) if render_mode else env)


def async_start_method() -> str:
    """forkserver where available, else spawn; never fork (torch, MuJoCo and EGL state do not
    survive a fork)."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def make_vector_env(spec: EnvSpec, num_envs: int, render: bool = False, kind: str = "sync",
                    device: torch.device | str = "cpu") -> gym.vector.VectorEnv | BatchedEnv:
    """Envs reset in the same step they end (SAME_STEP), so the final observation comes in
    ``info['final_obs']`` and the returned observation already starts the next episode.
    ``kind`` "sync" steps the envs one after another in this process (SyncVectorEnv); "async"
    runs each in its own worker process (AsyncVectorEnv), with identical results; "batched" is one
    ManiSkill env of ``num_envs`` sub-envs on the GPU simulator, its tensors on ``device``."""
    if kind == "batched":
        if not is_maniskill(spec.env_id):
            raise ConfigError("batched envs are ManiSkill's GPU simulator; other tasks step as sync or async envs")
        if render:
            raise ConfigError("videos are recorded from CPU-simulated envs (evaluate with --device cpu)")
        return make_batched_env(spec, num_envs, torch.device(device))
    if kind not in VECTOR_KINDS:
        raise ValueError(f"vector env kind must be one of {', '.join(VECTOR_KINDS)}, got {kind!r}")
    if kind == "async" and is_maniskill(spec.env_id):
        raise ConfigError("--vector-env async is for gymnasium/MuJoCo tasks; ManiSkill batches its own envs")
    if kind == "async" and is_python_env(spec.env_id):
        raise ConfigError("--vector-env async cannot send a Python callable env to worker processes; "
                          "give it as a 'module:EnvClass' entry point")
    gl = tuple((key, os.environ[key]) for key in _GL_VARS if os.environ.get(key))
    # render: each env keeps the frame of its last step (StepFrame) for videos
    fns = [functools.partial(_vector_member, spec, "rgb_array" if render else None, gl) for _ in range(num_envs)]
    if kind == "async":
        return gym.vector.AsyncVectorEnv(fns, context=async_start_method(),
                                         autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
