"""--vector-env async: AsyncVectorEnv gives the same steps as SyncVectorEnv, and env snapshots
(resume) move between the two kinds exactly."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from conftest import assert_one_error_line, cli_here

from accelerl.config import RESUMABLE_CHANGES, TrainConfig, build_config
from accelerl.envs import get_env_state, make_single_env, make_vector_env, probe_env, set_env_state
from accelerl.envs.factory import async_start_method
from accelerl.envs.state import Snapshottable
from accelerl.errors import ConfigError

SEEDS = [3, 4]


@pytest.fixture(scope="module")
def hopper():
    return probe_env("Hopper-v5", None)


def actions(spec, steps: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (steps, len(SEEDS), spec.act_dim))


def rollout(env: gym.vector.VectorEnv, acts: np.ndarray) -> list[tuple]:
    """Per step: obs, reward, terminated, truncated, and the final observations of the envs that ended."""
    out = []
    for a in acts:
        obs, reward, term, trunc, info = env.step(a)
        ended = info.get("_final_obs", np.zeros(len(a), bool))
        finals = [np.asarray(info["final_obs"][i]) for i in np.flatnonzero(ended)]
        out.append((obs, reward, term, trunc, ended.copy(), finals))
    return out


def assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        for part, (u, v) in enumerate(zip(x[:5], y[:5], strict=True)):
            assert np.array_equal(u, v), f"step {t}, part {part}"
        assert len(x[5]) == len(y[5]) and all(np.array_equal(u, v) for u, v in zip(x[5], y[5], strict=True)), t


def test_async_steps_like_sync_across_episode_ends(hopper):
    assert async_start_method() in ("forkserver", "spawn")
    acts = actions(hopper, 120, seed=0)
    sync, asyn = make_vector_env(hopper, 2), make_vector_env(hopper, 2, kind="async")
    plain = gym.vector.SyncVectorEnv([lambda: make_single_env(hopper)] * 2,
                                     autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    try:
        assert isinstance(asyn, gym.vector.AsyncVectorEnv) and isinstance(sync.envs[0], Snapshottable)
        first = [e.reset(seed=SEEDS)[0] for e in (sync, asyn, plain)]
        assert np.array_equal(first[0], first[1]) and np.array_equal(first[0], first[2])
        ref = rollout(sync, acts)
        assert_same(ref, rollout(asyn, acts))
        assert_same(ref, rollout(plain, acts))  # the Snapshottable layer changes nothing
        ends = np.array([r[4] for r in ref])
        # both envs finish episodes, not always on the same step
        assert ends[:, 0].sum() >= 2 and ends[:, 1].sum() >= 2 and (ends[:, 0] != ends[:, 1]).any()
        states = asyn.call("get_state")
        assert isinstance(states, tuple) and len(states) == 2 and states[0]["mjdata"] is not None
    finally:
        for e in (sync, asyn, plain):
            e.close()


def test_snapshots_restore_exactly_across_sync_and_async(hopper):
    warm, acts = actions(hopper, 13, seed=1), actions(hopper, 80, seed=2)
    src_async, src_sync = make_vector_env(hopper, 2, kind="async"), make_vector_env(hopper, 2)
    dst_async, dst_sync = make_vector_env(hopper, 2, kind="async"), make_vector_env(hopper, 2)
    # the layout of checkpoints written before the Snapshottable layer existed
    src_old = gym.vector.SyncVectorEnv([lambda: make_single_env(hopper)] * 2,
                                       autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    try:
        for src in (src_async, src_sync, src_old):
            src.reset(seed=SEEDS)
            rollout(src, warm)  # mid-episode (Hopper's random episodes last ~20 steps here)
        blobs = {"async": get_env_state(src_async), "sync": get_env_state(src_sync), "old": get_env_state(src_old)}
        assert all(isinstance(b, bytes) for b in blobs.values())
        assert pickle.loads(blobs["async"])["vector"] == {}
        ref = rollout(src_async, acts)
        assert sum(r[4].sum() for r in ref) >= 2  # the replay crosses resets: the env RNGs were restored
        assert_same(ref, rollout(src_sync, acts))
        # fresh envs, never reset (as on resume), then restored again after they have been stepped
        for dst in (dst_async, dst_sync):
            for kind in ("async", "sync", "old", "async"):
                set_env_state(dst, blobs[kind])
                assert_same(ref, rollout(dst, acts))
        with pytest.raises(ValueError, match="number of envs"):
            set_env_state(dst_async, pickle.dumps({"vector": {}, "envs": []}))
    finally:
        for e in (src_async, src_sync, src_old, dst_async, dst_sync):
            e.close()


def test_pixel_envs_render_inside_async_workers():
    from accelerl.envs.pixels import choose_gl_backend

    try:
        choose_gl_backend()
    except ConfigError as exc:
        pytest.skip(str(exc))
    spec = probe_env("Hopper-v5", None, pixels="state+rgb", image_size=24)
    acts = actions(spec, 6, seed=3)
    sync, asyn = make_vector_env(spec, 2), make_vector_env(spec, 2, kind="async")
    try:
        first = [e.reset(seed=SEEDS)[0] for e in (sync, asyn)]
        assert first[0].shape == (2, spec.obs_dim) and np.array_equal(first[0], first[1])
        assert first[0][:, :spec.pixel_dims].std() > 0  # real frames, not zeros
        ref = rollout(sync, acts)
        assert_same(ref, rollout(asyn, acts))
    finally:
        sync.close()
        asyn.close()


def test_vector_env_config():
    assert TrainConfig().vector_env == "sync" and build_config({"vector_env": "async"}).vector_env == "async"
    names = [f.name for f in TrainConfig.__dataclass_fields__.values()]
    assert names.index("vector_env") == names.index("num_envs") + 1
    with pytest.raises(ConfigError, match="ManiSkill batches its own envs"):
        build_config({"env": "ManiSkill/PushCube-v1", "vector_env": "async"})
    build_config({"env": "ManiSkill/PushCube-v1"})  # sync stays fine
    with pytest.raises(ConfigError, match="--vector-env must be one of"):
        build_config({"vector_env": "threads"})
    with pytest.raises(ValueError, match="kind"):
        make_vector_env(probe_env("Pendulum-v1", None), 1, kind="threads")
    # a config written before the key existed still loads, and resumes under either kind
    old = build_config({}).to_dict()
    del old["vector_env"]
    assert TrainConfig.from_dict(old).vector_env == "sync"
    assert "vector_env" in RESUMABLE_CHANGES
    try:
        from accelerl.run_state import check_resumable
    except ImportError:  # before the Trainer's state moved out of stages.py
        from accelerl.stages import check_resumable

    for kind in ("sync", "async"):
        check_resumable({"config": old, "env_step": 0}, build_config({"vector_env": kind}))


def test_cli_refuses_async_maniskill_and_unknown_kinds():
    rc, _, err = cli_here(["train", "--env", "ManiSkill/PushCube-v1", "--vector-env", "async"])
    assert_one_error_line(rc, err, "--vector-env async", "ManiSkill")
    rc, _, err = cli_here(["train", "--vector-env", "threads"])
    assert rc == 2 and "invalid choice" in err
