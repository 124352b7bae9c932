"""The CUDA path (``--device cuda`` and ``auto``). Skipped where there is no GPU (CI has none);
run by hand on a GPU machine with ``pytest tests/test_cuda.py``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import PENDULUM_SHORT, eval_rows, read_metrics, read_summary, run_cli, train_ok
from test_pixels import PIXEL_RUN

from accelerl import load_policy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def on(device: str, args: list[str]) -> list[str]:
    """The same run arguments with ``--device DEVICE`` instead of the tiny runs' ``--device cpu``."""
    i = args.index("--device")
    return [*args[:i + 1], device, *args[i + 2:]]


def pendulum_obs(n: int) -> np.ndarray:
    env = gym.make("Pendulum-v1")
    obs = [env.reset(seed=s)[0] for s in range(n)]
    env.close()
    return np.stack(obs)


@pytest.mark.parametrize("extra", [
    ["--mode", "accelerate", "--algo", "td3"],
    ["--mode", "accelerate", "--algo", "sac", "--critic", "transformer", "--bc-data", "dagger"],
    ["--mode", "scratch", "--algo", "sac"],
    ["--mode", "accelerator", "--algo", "td3", "--accelerator", "lstm", "--context", "4"],
], ids=["accelerate-td3", "accelerate-sac-critic-dagger", "scratch-sac", "accelerator-lstm"])
def test_runs_on_cuda_and_its_policy_acts_the_same_on_cpu(tmp_path, extra):
    run = tmp_path / "run"
    train_ok([*on("auto", PENDULUM_SHORT), *extra, "--run-dir", run])
    summary = read_summary(run)
    assert summary["device"].startswith("cuda")  # auto picked the GPU
    which = "accelerator" if "accelerator" in extra else "transformer"
    assert summary["env_steps"] == 600 and np.isfinite(summary["final_return"][which])
    obs = pendulum_obs(4)
    on_gpu, on_cpu = load_policy(run, which, device="cuda"), load_policy(run, which, device="cpu")
    for _ in range(3):  # a few steps, so the context window fills
        np.testing.assert_allclose(on_gpu.predict(obs), on_cpu.predict(obs), atol=1e-4)


@pytest.mark.parametrize("first,second", [("cpu", "cuda"), ("cuda", "cpu")])
def test_a_run_resumes_on_the_other_device(tmp_path, first, second):
    """A checkpoint written on one device resumes on the other (its generator cannot carry over,
    so the resumed run is not bit-identical, but it must finish both stages)."""
    run = tmp_path / "run"
    args = [*on(first, PENDULUM_SHORT), "--run-dir", run]
    args[args.index("--total-steps") + 1] = "400"  # stop in stage 2 (switch at 300)
    train_ok(args)
    train_ok(["--resume", run, "--total-steps", "600", "--device", second])
    summary = read_summary(run)
    assert summary["device"].startswith(second) and summary["env_steps"] == 600
    assert summary["switch_step"] == 300
    assert float(eval_rows(read_metrics(run))[-1]["env_step"]) == 600


def test_pixel_run_on_cuda(tmp_path):
    run = tmp_path / "run"
    train_ok([*on("cuda", PIXEL_RUN), "--run-dir", run])
    assert read_summary(run)["device"].startswith("cuda")
    rc, _out, err = run_cli(["eval", run, "--episodes", "1"])
    assert rc == 0, err


# --------------------------------------------------------------------------- the compiled path
@pytest.mark.parametrize("algo", ["td3", "sac"])
@pytest.mark.parametrize("kind", ["mlp", "lstm", "transformer", "cnn"])
def test_compiled_update_equals_eager_on_cuda(kind, algo, monkeypatch):
    """Inductor's GPU kernels under CUDA graphs compute the eager update. On CUDA inductor draws
    random numbers with its own Philox kernels, not torch's generator, so SAC's sampled actions
    would differ from eager's under the same seed: ``fallback_random`` keeps torch's RNG ops."""
    import test_compile
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)
    test_compile.test_compiled_update_equals_eager(kind, algo, device="cuda")


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_the_update_loop_makes_no_host_device_sync(algo):
    """Storing a step, sampling and the compiled update never wait for the GPU (after the graphs
    are captured): any synchronising call raises under sync debug mode "error"."""
    from test_compile import _agent

    from accelerl.replay import ReplayBuffer

    agent, spec, cfg = _agent("transformer", algo, "on", "cuda")
    buffer = ReplayBuffer(2000, 4, (spec.obs_dim,), spec.act_dim, "cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for t in range(600):
        ended = np.array([t % 97 == 96, t % 131 == 130, False, t % 50 == 49])
        final = torch.randn(int(ended.sum()), spec.obs_dim, device="cuda") if ended.any() else None
        buffer.add(torch.randn(4, spec.obs_dim, device="cuda"), torch.rand(4, spec.act_dim, device="cuda") * 2 - 1,
                   torch.randn(4, device="cuda"), torch.zeros(4, device="cuda"), torch.zeros(4, device="cuda"),
                   ended, final)
    for _ in range(4):  # compile and capture
        agent.update(buffer.sample(cfg.batch_size, cfg.window_len, gen))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(10):  # a collection step (no episode ends) and an update
            buffer.add(torch.randn(4, spec.obs_dim, device="cuda"), torch.zeros(4, spec.act_dim, device="cuda"),
                       torch.zeros(4, device="cuda"), torch.zeros(4, device="cuda"), torch.zeros(4, device="cuda"),
                       np.zeros(4, dtype=bool), None)
            losses = agent.update(buffer.sample(cfg.batch_size, cfg.window_len, gen))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(torch.isfinite(v) for v in losses.values())


def test_async_envs_on_cuda(tmp_path):
    run = tmp_path / "run"
    args = [*on("cuda", PENDULUM_SHORT), "--num-envs", "4", "--vector-env", "async", "--run-dir", run]
    train_ok(args)
    summary = read_summary(run)
    assert summary["device"].startswith("cuda") and summary["env_steps"] == 600


def test_maniskill_pushcube_on_the_gpu_simulator(tmp_path):
    """PushCube-v1 (state) with 16 envs in ManiSkill's GPU simulator, both stages; skipped where
    mani-skill is not installed (the ManiSkill part of the device check installs it)."""
    pytest.importorskip("mani_skill", reason="mani-skill is not installed")
    run = tmp_path / "run"
    train_ok(["--env", "ManiSkill/PushCube-v1", "--num-envs", "16", "--total-steps", "3200", "--learning-starts", "800",
              "--stage1-steps", "1600", "--eval-every", "1600", "--eval-episodes", "16", "--checkpoint-every", "1600",
              "--bc-every", "320", "--bc-updates", "5", "--preset", "maniskill", "--batch-size", "256",
              "--device", "cuda", "--run-dir", run])
    summary = read_summary(run)
    assert summary["device"].startswith("cuda") and summary["env_steps"] == 3200 and summary["switch_step"] == 1600
    rows = eval_rows(read_metrics(run))
    assert {r["policy"] for r in rows} >= {"accelerator", "transformer"}
    assert all(r["success_once"] != "" and int(float(r["episodes"])) == 16 for r in rows)
    # a resume on the GPU simulator restarts the episodes and goes on
    train_ok(["--resume", run, "--total-steps", "4800"])
    assert read_summary(run)["env_steps"] == 4800
