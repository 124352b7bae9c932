"""A stand-in for ManiSkill's ``ManiSkillVectorEnv`` on the GPU simulator, for CPU tests.

It speaks the same interface (batched torch tensors in and out, partial auto-resets of the envs
that ended, ``final_observation`` / ``final_info`` / ``_final_info`` in the step's info, the
step's own info replaced by the reset's after an auto-reset, a ``success`` flag) and makes every
stored value checkable: each observation carries (env, episode, step) and the episode's lengths
differ per env. Episodes whose seed is even end by success (a termination) at their length, odd
ones by the time limit (a truncation). Actions must arrive inside the asymmetric bounds
[0, 3] x [-1, 1]; the reward is the first action coordinate, so a policy can learn to push it up.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from accelerl.envs.factory import EnvSpec

LOW, HIGH = np.array([0.0, -1.0], np.float32), np.array([3.0, 1.0], np.float32)
STATE_DIM = 5  # env index, episode index, step, last action (2)
TIME_LIMIT = 9


class FakeManiSkillVectorEnv:
    def __init__(self, num_envs: int, rgb: bool = False, image_size: int = 32, cameras: int = 1,
                 device: str = "cpu", first_episode: int = 0) -> None:
        self.num_envs, self.rgb, self.image_size, self.device = num_envs, rgb, image_size, torch.device(device)
        self.cameras = cameras  # cameras stacked along channels, the base camera first (as ManiSkill's wrapper does)
        self.single_action_space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)
        self.max_episode_steps = TIME_LIMIT
        self.unwrapped = self
        # the current episode's index per env, ever increasing (from first_episode: unique across instances)
        self.episode = np.full(num_envs, first_episode - 1, dtype=np.int64)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.by_success = np.zeros(num_envs, dtype=bool)
        self.last_action = np.zeros((num_envs, 2), np.float32)
        self.rngs = [np.random.default_rng(i) for i in range(num_envs)]
        self.actions: list[np.ndarray] = []  # every action received, as the simulator saw it
        self.ended: list[np.ndarray] = []  # per step: which envs ended (term | trunc)
        self.history: dict[tuple[int, int], tuple[str, int]] = {}  # (env, episode) -> ("term"|"trunc", length)
        self.closed = False

    def _begin(self, envs: np.ndarray) -> None:
        for i in envs:
            draw = int(self.rngs[i].integers(1 << 30))
            self.by_success[i] = draw % 2 == 0
            self.length[i] = 2 + (draw + i) % (TIME_LIMIT - 1) if self.by_success[i] else TIME_LIMIT
            self.t[i] = 0
            self.last_action[i] = 0.0

    def _obs(self):
        state = np.concatenate([np.stack([np.arange(self.num_envs), self.episode, self.t], 1), self.last_action], 1)
        state = torch.as_tensor(state, dtype=torch.float32, device=self.device)
        if not self.rgb:
            return state
        # every pixel differs (channel, row, column, step), so a wrong layout shows
        h, w, c = np.meshgrid(np.arange(self.image_size), np.arange(self.image_size), np.arange(3 * self.cameras),
                              indexing="ij")
        frame = (c[None] * 61 + h[None] * 7 + w[None] * 3 + self.t[:, None, None, None]) % 256
        return {"rgb": torch.as_tensor(frame, dtype=torch.uint8, device=self.device), "state": state}

    def reset(self, *, seed=None, options=None):
        options = options or {}
        if "env_idx" in options:
            envs = np.asarray(torch.as_tensor(options["env_idx"]).cpu())
        else:
            envs = np.arange(self.num_envs)
            if seed is not None:
                seeds = seed if isinstance(seed, list) else [seed + i for i in range(self.num_envs)]
                self.rngs = [np.random.default_rng(s) for s in seeds]
        self.episode[envs] += 1
        self._begin(envs)
        return self._obs(), {"reconfigure": False}

    def step(self, actions: torch.Tensor):
        a = actions.detach().cpu().numpy().astype(np.float32)
        if a.shape != (self.num_envs, 2) or (a < LOW - 1e-5).any() or (a > HIGH + 1e-5).any():
            raise AssertionError(f"actions outside the task's bounds: {a}")
        self.actions.append(a.copy())
        self.t += 1
        self.last_action = a.copy()
        at_end = self.t >= self.length
        term = torch.as_tensor(at_end & self.by_success, device=self.device)
        trunc = torch.as_tensor(at_end & ~self.by_success, device=self.device)
        rew = torch.as_tensor(a[:, 0], device=self.device)
        obs = self._obs()
        infos = {"success": term.clone(), "elapsed_steps": torch.as_tensor(self.t, device=self.device)}
        dones = term | trunc
        self.ended.append(dones.cpu().numpy().copy())
        for i in np.flatnonzero(at_end):
            self.history[(int(i), int(self.episode[i]))] = ("term" if self.by_success[i] else "trunc", int(self.t[i]))
        if dones.any():
            final_obs = {k: v.clone() for k, v in obs.items()} if self.rgb else obs.clone()
            final_info = {k: v.clone() for k, v in infos.items()}
            obs, infos = self.reset(options={"env_idx": torch.arange(self.num_envs, device=self.device)[dones]})
            infos.update(final_observation=final_obs, final_info=final_info, _final_info=dones,
                         _final_observation=dones)
        return obs, rew, term, trunc, infos

    def close(self) -> None:
        self.closed = True


def fake_spec(rgb: bool = False, image_size: int = 32, keep: tuple[int, ...] | None = None) -> EnvSpec:
    state = len(keep) if keep else STATE_DIM
    return EnvSpec("ManiSkill/FakeCube-v1", 3 * image_size * image_size * rgb + state, 2, keep, TIME_LIMIT,
                   tuple(LOW.tolist()), tuple(HIGH.tolist()), "state+rgb" if rgb else None, image_size if rgb else 0,
                   "pd_ee_delta_pos")


def install(monkeypatch, made: list | None = None) -> None:
    """Route ManiSkill env creation to the fake and pretend the GPU simulator is in use."""
    from accelerl.envs import batched

    count = [0]

    def opener(task, num_envs, obs, image_size, control_mode, sim_backend):
        count[0] += 1
        env = FakeManiSkillVectorEnv(num_envs, rgb=obs == "rgb", image_size=image_size, first_episode=1000 * count[0])
        if made is not None:
            made.append(env)
        return env

    monkeypatch.setattr(batched, "open_maniskill_vector", opener)
    monkeypatch.setattr(batched, "uses_gpu_sim", lambda cfg, device: cfg.maniskill)
    import accelerl.collect

    monkeypatch.setattr(accelerl.collect, "uses_gpu_sim", lambda cfg, device: cfg.maniskill)
