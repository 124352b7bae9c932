"""Snapshot and restore the exact state of running envs, for resume-after-kill.

Pickling a gymnasium MuJoCo env re-creates it from its constructor arguments (the simulator
state is lost), so we copy state by hand: each wrapper's plain attributes (e.g. TimeLimit's
step counter), the unwrapped env's plain attributes and RNG, and MuJoCo's MjData.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import gymnasium as gym
import numpy as np

_PLAIN = (bool, int, float, str, type(None), np.ndarray, np.generic, np.random.Generator)


def _plain_attrs(obj: Any) -> dict[str, Any]:
    out = {}
    for key, value in vars(obj).items():
        if isinstance(value, _PLAIN) or (
            isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value)
        ):
            out[key] = copy.deepcopy(value)
    return out


def _chain(env: gym.Env) -> list[Any]:
    chain = [env]
    while hasattr(chain[-1], "env") and isinstance(chain[-1].env, gym.Env):
        chain.append(chain[-1].env)
    return chain


def get_env_state(vec_env: gym.vector.SyncVectorEnv) -> bytes:
    states = []
    for env in vec_env.envs:
        layers = [_plain_attrs(layer) for layer in _chain(env)]
        data = getattr(env.unwrapped, "data", None)
        mj = pickle.dumps(data) if data is not None and type(data).__name__ == "MjData" else None
        sim = env.unwrapped.get_sim_state() if hasattr(env.unwrapped, "get_sim_state") else None  # ManiSkill
        states.append({"layers": layers, "mjdata": mj, "sim": sim})
    return pickle.dumps({"vector": _plain_attrs(vec_env), "envs": states})


def set_env_state(vec_env: gym.vector.SyncVectorEnv, blob: bytes) -> None:
    state = pickle.loads(blob)
    if len(state["envs"]) != len(vec_env.envs):
        raise ValueError("env state has a different number of envs")
    for key, value in state["vector"].items():
        setattr(vec_env, key, value)
    for env, env_state in zip(vec_env.envs, state["envs"], strict=True):
        for layer, attrs in zip(_chain(env), env_state["layers"], strict=True):
            for key, value in attrs.items():
                setattr(layer, key, value)
            if isinstance(layer, gym.wrappers.PassiveEnvChecker):
                # Its first-step check compares with the reset data of this process, which a
                # restored env never had (the env was checked when the run started).
                layer.checked_reset = layer.checked_step = layer.checked_data_reuse = True
        if env_state.get("sim") is not None:
            env.unwrapped.set_sim_state(env_state["sim"])
        if env_state["mjdata"] is not None:
            import mujoco

            src = pickle.loads(env_state["mjdata"])
            unwrapped = env.unwrapped
            mujoco.mj_copyData(unwrapped.data, unwrapped.model, src)
