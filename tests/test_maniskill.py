"""ManiSkill3 tasks (optional extra): short state and RGB runs, success metrics, clear errors.

The runs need ``mani-skill`` and a Vulkan device (a GPU driver, or Mesa >= 25's lavapipe on CPU);
where either is missing they are skipped with the reason. CI installs both (see .ci/run)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import SUBPROCESS_ENV, TINY, assert_one_error_line, eval_rows, read_metrics, read_summary, train_ok

from accelerl.errors import ConfigError

PROBE = ("import gymnasium as gym, mani_skill.envs; "
         "gym.make('PushCube-v1', num_envs=1, obs_mode='state', sim_backend='physx_cpu').close()")


@functools.cache
def maniskill_missing() -> str | None:
    """Why ManiSkill cannot run here, or None when it can."""
    try:
        import mani_skill  # noqa: F401
    except ImportError:
        return "mani-skill is not installed (pip install 'accelerl[maniskill]')"
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=SUBPROCESS_ENV,
                              timeout=180)
    except subprocess.TimeoutExpired:
        return "ManiSkill hung creating a task here (Vulkan driver too old?)"
    if proc.returncode != 0:
        return "ManiSkill cannot create a task here (no usable Vulkan device: Mesa >= 25 or a GPU driver)"
    return None


@pytest.fixture
def maniskill() -> None:
    if maniskill_missing():
        pytest.skip(maniskill_missing())


needs_maniskill = pytest.mark.usefixtures("maniskill")

RUN = ["--env", "ManiSkill/PushCube-v1", "--learning-starts", "100", "--eval-episodes", "2", "--bc-every", "100",
       "--bc-updates", "3", *TINY]


@needs_maniskill
def test_state_run_logs_success_and_ends_episodes_by_time_limit(tmp_path):
    run = tmp_path / "state"
    train_ok([*RUN, "--total-steps", "400", "--stage1-steps", "200", "--eval-every", "200", "--run-dir", run])
    summary = read_summary(run)
    assert summary["accelerator"] == "mlp" and summary["switch_step"] == 200 and summary["env_steps"] == 400
    rows = eval_rows(read_metrics(run))
    assert {r["policy"] for r in rows} == {"random", "accelerator", "transformer"}
    for r in rows:
        assert 0.0 <= float(r["success_once"]) <= 1.0 and 0.0 <= float(r["success_at_end"]) <= float(r["success_once"])
        assert float(r["ep_len_mean"]) <= 50  # 50-step episodes (time limit), or earlier on success


@needs_maniskill
def test_rgb_run_uses_the_cnn_and_stores_frames_as_bytes(tmp_path):
    run = tmp_path / "rgb"
    train_ok([*RUN, "--obs", "rgb", "--image-size", "32", "--cnn-features", "8", "--total-steps", "200",
              "--stage1-steps", "150", "--eval-every", "200", "--eval-episodes", "1", "--run-dir", run])
    summary = read_summary(run)
    assert summary["accelerator"] == "cnn" and np.isfinite(summary["final_return"]["transformer"])
    frame = 3 * 32 * 32
    assert frame <= summary["replay_bytes"] / 500 < 1.2 * frame  # stage-2 buffer of 500 rows


@needs_maniskill
def test_restored_env_continues_exactly_like_the_original():
    """A snapshot taken mid-episode and restored into another env (one that has run episodes of
    its own) continues bit for bit like the original, observations, rewards and step limit alike."""
    from accelerl.envs.maniskill import ManiSkillEnv

    original, other = ManiSkillEnv("PushCube-v1"), ManiSkillEnv("PushCube-v1")
    actions = np.random.default_rng(0).uniform(-1, 1, (60, original.action_space.shape[0])).astype(np.float32)
    original.reset(seed=3)
    for a in actions[:20]:
        original.step(a)
    snapshot = original.get_sim_state()
    expected = [original.step(a) for a in actions[20:]]
    other.reset(seed=11)
    for a in actions[:7]:
        other.step(a)
    other.set_sim_state(snapshot)
    got = [other.step(a) for a in actions[20:]]
    for (o1, r1, te1, tr1, _), (o2, r2, te2, tr2, _) in zip(expected, got, strict=True):
        assert np.array_equal(o1, o2) and r1 == r2 and (te1, tr1) == (te2, tr2)
    assert any(tr for *_, tr, _ in got)  # the 50-step limit falls at the same step
    original.close()
    other.close()


@needs_maniskill
def test_resumed_run_equals_the_straight_run(tmp_path):
    from test_resume import assert_same_run

    args = [*RUN, "--stage1-steps", "200", "--eval-every", "110", "--checkpoint-every", "110"]
    straight, short = tmp_path / "straight", tmp_path / "short"
    train_ok([*args, "--total-steps", "330", "--run-dir", straight])
    train_ok([*args, "--total-steps", "220", "--run-dir", short])  # stops mid-episode, in stage 2
    train_ok(["--resume", short, "--total-steps", "330"])
    assert_same_run(short, straight)


@needs_maniskill
def test_missing_vulkan_is_one_error_line(tmp_path):
    env = {**SUBPROCESS_ENV, "VK_ICD_FILENAMES": os.devnull}
    proc = subprocess.run([sys.executable, "-m", "accelerl.cli", "train", "--env", "ManiSkill/PushCube-v1",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert_one_error_line(proc.returncode, proc.stderr, "Vulkan", "mesa-vulkan-drivers")


def test_missing_package_says_how_to_install(monkeypatch):
    from accelerl.envs.maniskill import ManiSkillEnv

    monkeypatch.setitem(sys.modules, "mani_skill", None)  # import mani_skill -> ImportError
    monkeypatch.setitem(sys.modules, "mani_skill.envs", None)
    with pytest.raises(ConfigError, match=r"accelerl\[maniskill\]"):
        ManiSkillEnv("PushCube-v1")


@needs_maniskill
@pytest.mark.parametrize("task", ["PushCube-v1", "PullCube-v1", "PickCube-v1", "StackCube-v1"])
def test_rgb_observation_is_the_base_camera_frame_then_the_state(task):
    """One 3-channel frame (StackCube also has a hand camera, which must not leak into the state
    part), then a short proprioceptive + task state; episodes end by the 50-step limit."""
    from accelerl.envs import make_vector_env, probe_env

    spec = probe_env(f"ManiSkill/{task}", None, obs="rgb", image_size=24)
    assert spec.pixel_shape == (3, 24, 24) and 0 < spec.state_dim < 100
    env = make_vector_env(spec, 1)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1, spec.obs_dim) and 0 <= obs[0, :spec.pixel_dims].min() and obs[0, :spec.pixel_dims].max() <= 255
    ends = 0
    for _ in range(50):
        obs, _, term, trunc, _ = env.step(np.zeros((1, spec.act_dim)))
        ends += int(term[0] or trunc[0])
    env.close()
    assert obs.shape == (1, spec.obs_dim) and ends == 1


@needs_maniskill
def test_an_env_that_renders_keeps_its_render_device_for_the_next_one():
    """SAPIEN frees its compiled render pipelines with a device's last render system, and lavapipe
    takes about 12 s on 2 cores to compile them again: the probe, training and evaluation envs of
    one run each paid that. An env that renders leaves its device held for the process."""
    import gc

    from accelerl.envs import maniskill

    env = maniskill.ManiSkillEnv("PushCube-v1", obs="rgb", image_size=24)
    device = str(env._ms.unwrapped.scene.sub_scenes[0].render_system.device)
    env.close()
    del env
    gc.collect()
    assert str(maniskill._RENDER_DEVICES_KEPT[device].device) == device


@needs_maniskill
def test_the_batched_adapter_on_the_real_cpu_simulator():
    """ManiSkill's own ManiSkillVectorEnv (CPU simulator, one sub-env) through the adapter the GPU
    path uses: held still, the episode hits the 50-step time limit, a truncation with the true
    final observation (the arm where it stopped, not the new episode's start) and success reported."""
    import torch

    from accelerl.envs.batched import BatchedEnv, open_maniskill_vector

    vec = open_maniskill_vector("PushCube-v1", 1, "state", 64, "pd_ee_delta_pos", "physx_cpu")
    space = vec.single_action_space
    env = BatchedEnv(vec, torch.device("cpu"), tuple(space.low), tuple(space.high))
    try:
        obs = env.reset([5])
        hold = torch.zeros(1, space.shape[0])  # the middle of the bounds: no end-effector motion
        steps = 0
        while steps < 60:
            prev, out = obs, env.step(hold)
            obs, steps = out.obs, steps + 1
            if out.ended.any():
                break
        assert steps == 50 and out.trunc.tolist() == [1.0] and out.term.tolist() == [0.0]
        assert out.success is not None and not out.success[0]
        assert torch.allclose(out.final_obs, prev, atol=1e-2)  # where the held-still episode ended
        assert not torch.allclose(out.final_obs, out.obs, atol=1e-2)  # the next episode starts elsewhere
    finally:
        env.close()


@needs_maniskill
def test_the_time_limit_is_read_from_maniskills_own_wrapper():
    """ManiSkill keeps a task's time limit on its TimeLimitWrapper, not in gymnasium's spec: the
    probe and the single env must find it there (PushCube-v1: 50 steps)."""
    from accelerl.envs import probe_env
    from accelerl.envs.maniskill import ManiSkillEnv

    assert probe_env("ManiSkill/PushCube-v1", None).max_episode_steps == 50
    env = ManiSkillEnv("PushCube-v1")
    try:
        assert env.max_episode_steps == 50
    finally:
        env.close()


@needs_maniskill
def test_a_state_task_renders_only_when_asked_to():
    """A state task with no render mode builds no renderer (one per sub-scene on the GPU
    simulator); one asked for frames (``--video``, evaluation videos) keeps it."""
    from accelerl.envs.maniskill import open_maniskill

    for render_mode, drawing in ((None, False), ("rgb_array", True)):
        env = open_maniskill("PushCube-v1", render_mode=render_mode)
        try:
            assert (env.unwrapped.backend.render_backend != "none") == drawing
        finally:
            env.close()
