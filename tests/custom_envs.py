"""Envs a user might write, reached by entry point ("custom_envs:PointEnv") from tests and from
training subprocesses started in this folder."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np


class PointEnv(gym.Env):
    """A point on a plane pushed toward the origin: obs (x, y, step / horizon), reward -|p|^2,
    truncated after ``horizon`` steps, terminated when it leaves the [-2, 2] box. Asymmetric
    action bounds, so action rescaling is exercised too."""

    metadata: ClassVar[dict] = {"render_modes": []}
    horizon = 40

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Box(np.array([-0.2, -0.1], np.float32), np.array([0.1, 0.2], np.float32))
        self.pos = np.zeros(2, np.float32)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([*self.pos, self.t / self.horizon], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = self.pos + np.asarray(action, np.float32)
        self.t += 1
        terminated = bool(np.abs(self.pos).max() > 2.0)
        return self._obs(), -float(self.pos @ self.pos), terminated, self.t >= self.horizon, {}


def make_point_env() -> gym.Env:
    """A factory, for the "module:factory" form."""
    return PointEnv()


class DiscreteEnv(PointEnv):
    def __init__(self) -> None:
        super().__init__()
        self.action_space = gym.spaces.Discrete(3)


class DictObsEnv(PointEnv):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Dict({"pos": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)})


class UnboundedActionEnv(PointEnv):
    def __init__(self) -> None:
        super().__init__()
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)


def not_an_env() -> int:
    return 3


class Registered(PointEnv):
    """Also registered below under its own name, unversioned, with a time limit: "custom_envs:Registered"
    means the registration (gymnasium's form), not the bare class."""


gym.register("Registered", entry_point=Registered, max_episode_steps=7)
