"""Snapshot and restore the exact state of running envs, for resume-after-kill.

Pickling a gymnasium MuJoCo env re-creates it from its constructor arguments (the simulator
state is lost), so we copy state by hand: each wrapper's plain attributes (e.g. TimeLimit's
step counter), the unwrapped env's plain attributes and RNG, and MuJoCo's MjData.

The per-env part (``snapshot``/``restore``) runs where the env lives: in this process for a
SyncVectorEnv, in each worker process for an AsyncVectorEnv, reached through the ``Snapshottable``
layer that ``make_vector_env`` puts outermost on every env. Both kinds write the same per-env
payloads, so a checkpoint of a sync run restores into async envs and vice versa.
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


def snapshot(env: gym.Env) -> dict[str, Any]:
    """One env's state: every layer's plain attributes, MjData (pickled), ManiSkill's sim state."""
    layers = [_plain_attrs(layer) for layer in _chain(env)]
    data = getattr(env.unwrapped, "data", None)
    mj = pickle.dumps(data) if data is not None and type(data).__name__ == "MjData" else None
    sim = env.unwrapped.get_sim_state() if hasattr(env.unwrapped, "get_sim_state") else None  # ManiSkill
    return {"layers": layers, "mjdata": mj, "sim": sim}


def restore(env: gym.Env, env_state: dict[str, Any]) -> None:
    """Put ``env`` (built like the snapshotted one) into the state ``snapshot`` returned."""
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


class Snapshottable(gym.Wrapper):
    """Outermost layer of each vector-env member; passes everything through unchanged and exposes
    ``snapshot``/``restore`` of the env below it (this layer itself is not in the snapshot, so
    payloads match checkpoints written before it existed).

    ``vec_env.call("get_state")`` returns one state per env. ``call`` sends the same arguments to
    every env, so restoring goes through ``vec_env.set_attr("snapshot_state", states)``, the vector
    API that hands env i the value states[i] (in AsyncVectorEnv, one ``_setattr`` message per pipe).
    """

    def get_state(self) -> dict[str, Any]:
        return snapshot(self.env)

    def set_state(self, state: dict[str, Any]) -> None:
        restore(self.env, state)

    # set_wrapper_attr probes hasattr first, which runs the getter once: harmless (no side effects).
    snapshot_state = property(get_state, set_state)


def _below(env: gym.Env) -> gym.Env:
    return env.env if isinstance(env, Snapshottable) else env


def get_env_state(vec_env: gym.vector.VectorEnv) -> bytes:
    if isinstance(vec_env, gym.vector.SyncVectorEnv):
        vector = _plain_attrs(vec_env)
        states = [snapshot(_below(env)) for env in vec_env.envs]
    else:
        # AsyncVectorEnv with SAME_STEP autoreset keeps no host-side state that a step reads: the
        # shared observation buffer is rewritten by every step, and each worker's local
        # `autoreset` flag is only read in NEXT_STEP mode. So the per-env states are all of it.
        vector = {}
        states = list(vec_env.call("get_state"))
    return pickle.dumps({"vector": vector, "envs": states})


def set_env_state(vec_env: gym.vector.VectorEnv, blob: bytes) -> None:
    state = pickle.loads(blob)
    if len(state["envs"]) != vec_env.num_envs:
        raise ValueError("env state has a different number of envs")
    if isinstance(vec_env, gym.vector.SyncVectorEnv):
        # SyncVectorEnv's own buffers, as saved by a sync run ({} from an async run: with SAME_STEP
        # autoreset every step overwrites them before reading them, so nothing is lost).
        for key, value in state["vector"].items():
            setattr(vec_env, key, value)
        for env, env_state in zip(vec_env.envs, state["envs"], strict=True):
            restore(_below(env), env_state)
    else:
        # A sync run's "vector" attributes are SyncVectorEnv internals; setting them here would
        # replace AsyncVectorEnv's shared-memory observation view, so they are not restored.
        if not all(vec_env.call("has_wrapper_attr", "set_state")):  # else set_attr would just add an attribute
            raise ValueError("restoring async envs needs the Snapshottable layer of make_vector_env")
        vec_env.set_attr("snapshot_state", list(state["envs"]))
