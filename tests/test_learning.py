"""Learning: accelerate mode with TD3 on Pendulum-v1 learns, distils, and fine-tunes (the LSTM
accelerator and SAC: test_learning_agents.py). (Seed 1 is marked slow: `pytest -m slow`.)

Budget: 10k stage-1 steps (the accelerator passes -400 around 6-7k for seeds 0 and 1), then
4k stage-2 steps via --resume --total-steps (which reproduces a straight run exactly), about
30 s per seed on one CPU core.

The BC loss itself is not a good yardstick against its *first* value: the teacher keeps
changing, and the first labels come from an untrained accelerator whose actions are small. So
imitation is measured directly at the switch: on the replay windows of the switch checkpoint,
the transformer's mean squared error to the accelerator's actions must be a small fraction of
the variance of those actions (R^2 > 0.8)."""

from __future__ import annotations

import statistics

import pytest
import torch
from conftest import eval_rows, read_metrics, train_ok

from accelerl import checkpoint, load_policy
from accelerl.replay import ReplayBuffer

NETS = ["--hidden-size", "64", "--hidden-layers", "2", "--d-model", "64", "--d-ff", "128", "--n-heads", "2",
        "--batch-size", "128", "--bc-batch-size", "128", "--buffer-size", "20000", "--stage2-buffer-size", "5000",
        "--device", "cpu"]
STAGE1 = ["--env", "Pendulum-v1", "--mode", "accelerate", "--algo", "td3", "--total-steps", "10000",
          "--stage1-steps", "10000", "--learning-starts", "1000", "--eval-every", "1000", "--eval-episodes", "5",
          "--checkpoint-every", "5000", "--bc-every", "250", "--bc-updates", "40", "--bc-lr", "1e-3", *NETS]


def imitation_error(run_dir) -> tuple[float, float]:
    """(MSE of the transformer to the accelerator, variance of the accelerator's actions) on
    replay windows of the latest checkpoint."""
    state = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    saved = state["buffer"]
    rows, num_envs = saved["rows"], saved["obs"].shape[1]  # the saved rows are a prefix of the ring
    buf = ReplayBuffer(rows * num_envs, num_envs, tuple(saved["obs"].shape[2:]), saved["act"].shape[-1])
    buf.load_state_dict(saved)
    student, teacher = load_policy(run_dir, "transformer").actor, load_policy(run_dir, "accelerator").actor
    rows, envs = buf.sample_index(4000, 3, torch.Generator().manual_seed(0))
    window, mask = buf.gather(rows, envs, 3)
    with torch.no_grad():
        labels, pred = teacher.act(window, mask), student.act(window, mask)
    return float((pred - labels).pow(2).mean()), float(labels.var())


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_accelerate_td3_learns_pendulum(seed, tmp_path):
    run = tmp_path / f"s{seed}"
    train_ok([*STAGE1, "--seed", str(seed), "--run-dir", run])
    evals = eval_rows(read_metrics(run))
    acc = [float(r["return_mean"]) for r in evals if r["policy"] == "accelerator"]
    tr = [float(r["return_mean"]) for r in evals if r["policy"] == "transformer"]
    random_return = next(float(r["return_mean"]) for r in evals if r["policy"] == "random")
    assert random_return < -900
    assert max(acc) > -400, f"accelerator returns {acc}"
    assert max(tr) > -400, f"transformer (BC only) returns {tr}"
    bc = [float(r["bc_loss"]) for r in evals if r["policy"] == "transformer" and r["bc_loss"]]
    assert len(bc) >= 8 and min(bc) < 0.5 * bc[0] and bc[-1] < 0.1, f"BC losses {bc}"
    mse, var = imitation_error(run)  # the checkpoint at the switch (step 10000)
    assert var > 0.1 and mse < 0.2 * var, (mse, var)

    # stage 2: the transformer takes over and keeps the task solved (no collapse)
    train_ok(["--resume", run, "--total-steps", "14000"])
    stage2 = [float(r["return_mean"]) for r in eval_rows(read_metrics(run)) if r["stage"] == "stage2"]
    assert len(stage2) == 4 and statistics.median(stage2) > -600, f"stage-2 returns {stage2}"
