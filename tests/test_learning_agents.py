"""Learning: the LSTM accelerator and SAC learn Pendulum-v1 (accelerate mode with TD3:
test_learning.py). Apart from it so that the two files' minutes run on two cores.

Each run stops at its first evaluation that reaches -400 (``StopOnReturn``): what is asserted is
that it gets there within its budget, and the steps after that only cost time."""

from __future__ import annotations

from conftest import eval_rows, read_metrics

import accelerl
from accelerl.callbacks import StopOnReturn

SOLVED = -400.0
PENDULUM = {"env": "Pendulum-v1", "mode": "accelerator", "hidden_size": 64, "batch_size": 128,
            "buffer_size": 20000, "learning_starts": 1000, "eval_every": 1000, "eval_episodes": 5,
            "device": "cpu"}


def _accelerator_rows(run) -> list[dict[str, str]]:
    return [r for r in eval_rows(read_metrics(run)) if r["policy"] == "accelerator"]


def test_lstm_accelerator_learns_fully_observed_pendulum(tmp_path):
    """The LSTM agent (the POMDP accelerator) must learn what the MLP learns. With a one-layer
    head after the LSTM, TD3's actor saturated at the action bounds and stayed there (-1500).

    Batch 64 and an evaluation every 500 steps: on a 2-core AMD EPYC seeds 0 and 1 reached -400 at
    6500 and 6000 steps in 170 and 163 s; at batch 128 and every 1000 steps seed 0 needed all 7000
    (about 250 s). The LSTM's time per update scales with the batch; its sample efficiency did not."""
    run = tmp_path / "lstm"
    result = accelerl.train({**PENDULUM, "accelerator": "lstm", "context": 4, "batch_size": 64, "eval_every": 500,
                             "total_steps": 7000, "checkpoint_every": 7000}, run_dir=run,
                            callbacks=[StopOnReturn(SOLVED, "accelerator")])
    returns = [float(r["return_mean"]) for r in _accelerator_rows(run)]
    assert result.stop_reason is not None and max(returns) >= SOLVED, f"LSTM accelerator returns {returns}"


def test_sac_learns_pendulum(tmp_path):
    """SAC (MLP, automatic entropy tuning from alpha 1) solves Pendulum within 8k steps (about
    -300 to -100 from 6k on seeds 0 and 1); a sign error in its actor loss never gets there."""
    run = tmp_path / "sac"
    result = accelerl.train({**PENDULUM, "algo": "sac", "hidden_layers": 2, "total_steps": 8000,
                             "checkpoint_every": 8000}, run_dir=run, callbacks=[StopOnReturn(SOLVED, "accelerator")])
    rows = _accelerator_rows(run)
    returns = [float(r["return_mean"]) for r in rows]
    assert result.stop_reason is not None and returns[0] < -900 and max(returns) >= SOLVED, f"SAC returns {returns}"
    alphas = [float(r["alpha"]) for r in rows if r["alpha"]]
    assert alphas[-1] < 0.5 * alphas[0], f"alpha {alphas}"  # the temperature tunes itself down
