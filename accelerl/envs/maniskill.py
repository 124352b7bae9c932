"""ManiSkill3 tasks (``ManiSkill/PushCube-v1``) as plain single gymnasium envs.

ManiSkill envs are batched and speak torch; its CPU backend (``physx_cpu``) runs one env per
process-local instance. Wrapping one instance as an ordinary numpy ``gym.Env`` lets the same
SyncVectorEnv, replay, evaluation and resume code serve ManiSkill and MuJoCo alike. Observations:
``state`` (ManiSkill's flat state vector) or ``rgb`` (the base camera's frame, CHW-flattened,
followed by the proprioceptive + task state, the same layout as ``--pixels state+rgb``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from accelerl.errors import ConfigError

PREFIX = "ManiSkill/"
TASKS = ("PushCube-v1", "PullCube-v1", "PickCube-v1", "StackCube-v1")
INSTALL_HINT = "pip install 'accelerl[maniskill]'"
VULKAN_HINT = ("ManiSkill needs a Vulkan device: a GPU driver, or on CPU Mesa's lavapipe from Mesa >= 25 (Debian 12: "
               "apt-get install -t bookworm-backports mesa-vulkan-drivers; see README)")


def is_maniskill(env_id: str) -> bool:
    return env_id.startswith(PREFIX)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 while ManiSkill/sapien start up: they print per-env warnings
    ("CUDA not found, falling back to CPU") and C++ renderer errors that we turn into one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _import_maniskill():
    try:
        import mani_skill.envs  # noqa: F401  (registers the tasks)
        from mani_skill.utils.wrappers.flatten import FlattenRGBDObservationWrapper
    except ImportError as exc:
        raise ConfigError(f"ManiSkill tasks need the optional extra ({INSTALL_HINT}): {exc}") from None
    logging.getLogger("mani_skill").setLevel(logging.ERROR)  # no "CUDA not found, using CPU" per env
    try:  # sapien's C++ renderer logs its own Vulkan errors; ours says it in one line
        import sapien

        sapien.render.set_log_level("off")
    except (ImportError, AttributeError):
        pass
    return FlattenRGBDObservationWrapper


def gpu_memory_error(exc: BaseException, num_envs: int) -> ConfigError | None:
    """The one-line error for ``num_envs`` envs that do not fit the GPU's memory, if ``exc`` (from
    creating, resetting or stepping them) is that; else None."""
    import torch

    text = str(exc).lower()
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text or (
            "memory" in text and ("gpu" in text or "cuda" in text)):
        return ConfigError(f"{num_envs} ManiSkill envs do not fit in the GPU's memory; lower --num-envs "
                           "(or --image-size with --obs rgb)")
    return None


def episode_limit(env) -> int | None:
    """A ManiSkill task's time limit. ManiSkill registers it on its own TimeLimitWrapper
    (``_max_episode_steps``), so neither gymnasium's spec nor the base env holds it; the
    batched wrapper keeps the wrapped env as ``_env``."""
    seen = 0
    while env is not None and seen < 32:
        limit = getattr(env, "_max_episode_steps", None) or getattr(env, "max_episode_steps", None)
        if isinstance(limit, int) and limit > 0:
            return limit
        env, seen = getattr(env, "env", None) or getattr(env, "_env", None), seen + 1
    return None


# SAPIEN compiles its render pipelines once per render device and frees them with the device's
# last render system, so every env that renders, opened after the previous one was freed, compiled
# them again: about 12 s each with lavapipe on 2 CPU cores, paid by the probe, the training env and
# the evaluation env of one run. One empty render system per device, held for the process, keeps them.
_RENDER_DEVICES_KEPT: dict[str, Any] = {}


def _keep_render_device(env: gym.Env) -> None:
    """Hold the render device of ``env`` (one that renders) for the rest of the process."""
    try:
        device = env.unwrapped.scene.sub_scenes[0].render_system.device
        if str(device) not in _RENDER_DEVICES_KEPT:
            import sapien

            _RENDER_DEVICES_KEPT[str(device)] = sapien.render.RenderSystem(device)
    except Exception:  # a start-up shortcut, never a reason to refuse a working env
        return


def open_maniskill(task: str, obs: str = "state", image_size: int = 64, control_mode: str = "pd_ee_delta_pos",
                   sim_backend: str = "physx_cpu", num_envs: int = 1, render_mode: str | None = None) -> gym.Env:
    """A ManiSkill task of ``num_envs`` sub-envs (batched torch API). With ``obs="rgb"`` its
    observations are flattened to ``{"rgb": [N, H, W, C] uint8, "state": [N, S]}``, the base camera first.
    A missing extra, an unknown task or a missing Vulkan device is one ConfigError."""
    with _quiet_stderr():
        flatten = _import_maniskill()
    if task not in gym.registry:
        raise ConfigError(f"unknown ManiSkill task {PREFIX}{task} (tested: {', '.join(TASKS)})")
    kwargs = {"obs_mode": obs, "control_mode": control_mode, "num_envs": num_envs, "sim_backend": sim_backend,
              "render_mode": render_mode}
    if obs == "rgb":
        kwargs["sensor_configs"] = {"width": image_size, "height": image_size}
    elif render_mode is None:
        # Nothing to draw: no render system per sub-scene (memory and start-up time on the GPU
        # simulator), and state tasks then need no Vulkan device at all.
        kwargs["render_backend"] = "none"
    try:
        with _quiet_stderr():
            env = gym.make(task, **kwargs)
    except Exception as exc:  # sapien raises plain RuntimeErrors for missing render devices
        too_many = gpu_memory_error(exc, num_envs)
        if too_many is not None:
            raise too_many from None
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if any(word in text.lower() for word in ("vulkan", "vk::", "driver", "render", "device")):
            raise ConfigError(f"{VULKAN_HINT} ({text})") from None
        raise ConfigError(f"could not create ManiSkill task {task}: {text}") from None
    if obs == "rgb" or render_mode is not None:
        _keep_render_device(env)
    if obs != "rgb":
        return env
    # The wrapper stacks every camera's RGB along channels, in sensor order; we keep the
    # base camera's 3 channels (StackCube also has a hand camera).
    cameras = list(env.reset(seed=0)[0]["sensor_data"])
    if cameras[0] != "base_camera":
        raise ConfigError(f"ManiSkill task {task} has no base camera first (cameras: {', '.join(cameras)})")
    return flatten(env, rgb=True, depth=False, state=True)


class ManiSkillEnv(gym.Env):
    """One ManiSkill3 env (batch of 1) with numpy observations, rewards and flags.
    ``info['success']`` is the task's success flag at each step."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"]}

    def __init__(self, task: str, obs: str = "state", image_size: int = 64, control_mode: str = "pd_ee_delta_pos",
                 sim_backend: str = "physx_cpu", render_mode: str | None = None) -> None:
        self._ms = open_maniskill(task, obs, image_size, control_mode, sim_backend, 1, render_mode)
        env = self._ms
        self.rgb = obs == "rgb"
        self.render_mode = render_mode
        low, high = env.unwrapped.single_action_space.low, env.unwrapped.single_action_space.high
        self.action_space = gym.spaces.Box(low, high, dtype=np.float32)
        sample, _ = self._ms.reset(seed=0)
        size = self._flat(sample).shape[0]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.max_episode_steps = episode_limit(env)

    def _flat(self, obs) -> np.ndarray:
        if not self.rgb:
            return obs[0].detach().cpu().numpy().astype(np.float32)
        frame = obs["rgb"][0][..., :3].permute(2, 0, 1).reshape(-1).float()  # base camera, CHW
        state = obs["state"][0].float()
        return np.concatenate([frame.cpu().numpy(), state.cpu().numpy()])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # Every episode gets an explicit seed from this env's own RNG: ManiSkill then builds the
        # episode from that seed alone (an unseeded reset would draw from the global torch RNG),
        # so (seed, actions so far) pins the simulator state exactly; resume replays it.
        super().reset(seed=seed)
        self._episode_seed = int(self.np_random.integers(2**31))
        self._episode_actions: list[np.ndarray] = []
        obs, _ = self._ms.reset(seed=self._episode_seed, options=options)
        return self._flat(obs), {}

    def step(self, action: np.ndarray):
        import torch

        action = np.asarray(action, dtype=np.float32)
        self._episode_actions.append(action.copy())
        obs, rew, term, trunc, info = self._ms.step(torch.as_tensor(action)[None])
        success = bool(info["success"][0]) if "success" in info else False
        return self._flat(obs), float(rew[0]), bool(term[0]), bool(trunc[0]), {"success": success}

    def render(self):
        frame = self._ms.render()
        return frame[0].cpu().numpy() if hasattr(frame, "cpu") else frame

    def close(self) -> None:
        self._ms.close()

    # Resume. Writing poses and velocities back into PhysX is not exact (even writing the same
    # state in place changes the next steps by ~1e-6: the solver keeps state the API does not
    # expose), but the simulator is deterministic, so we replay the episode from its seed instead:
    # at most one episode (50 steps for the tabletop tasks) of simulation.
    def get_sim_state(self) -> dict:
        return {"episode_seed": self._episode_seed, "actions": [a.copy() for a in self._episode_actions]}

    def set_sim_state(self, state: dict) -> None:
        import torch

        self._ms.reset(seed=state["episode_seed"])
        for action in state["actions"]:
            self._ms.step(torch.as_tensor(action)[None])
        self._episode_seed, self._episode_actions = state["episode_seed"], [a.copy() for a in state["actions"]]
