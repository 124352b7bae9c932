"""End to end: every mode x algorithm on tiny budgets, the run directory's contents, eval/plot,
save -> load -> predict, and same-seed determinism."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import (
    METRIC_COLUMNS,
    PENDULUM_SHORT,
    SUMMARY_KEYS,
    TINY,
    cli_here,
    comparable,
    eval_rows,
    read_header,
    read_metrics,
    read_summary,
    run_cli,
    train_ok,
)

from accelerl import checkpoint, load_policy
from accelerl.algos.base import evaluating
from accelerl.config import build_config
from accelerl.nets.encoders import LSTMEncoder
from accelerl.stages import Trainer

CASES = {
    "accelerate-td3": ["--mode", "accelerate", "--algo", "td3"],
    # automatic switch, forced by its cap
    "accelerate-sac": ["--mode", "accelerate", "--algo", "sac", "--stage1-steps", "auto", "--switch-max-steps", "300"],
    "scratch-td3": ["--mode", "scratch", "--algo", "td3"],
    "scratch-sac": ["--mode", "scratch", "--algo", "sac"],
    "accelerator-td3": ["--mode", "accelerator", "--algo", "td3"],
    "accelerator-sac": ["--mode", "accelerator", "--algo", "sac"],
    # the paper's BC data (accelerator rollouts), two training envs, stage 2 without warm start
    "accelerate-td3-rollouts": ["--mode", "accelerate", "--algo", "td3", "--bc-data", "rollouts",
                                "--bc-rollout-episodes", "1", "--num-envs", "2", "--no-stage2-warmstart"],
    # the LSTM accelerator (and LSTM critic) in every mode and algorithm (TD3 accelerate: Hopper below)
    **{f"{mode}-{algo}-lstm": ["--mode", mode, "--algo", algo, "--accelerator", "lstm", "--context", "4"]
       for mode in ("accelerate", "scratch", "accelerator") for algo in ("td3", "sac")
       if (mode, algo) != ("accelerate", "td3")},
}
HOPPER_MASKED = [
    "--env", "Hopper-v5", "--obs-mask", "velocities", "--mode", "accelerate", "--algo", "td3", "--total-steps", "600",
    "--learning-starts", "200", "--stage1-steps", "300", "--eval-every", "200", "--eval-episodes", "2",
    "--checkpoint-every", "300", "--bc-every", "100", "--bc-updates", "5", *TINY,
]


# DAgger: every stage-1 episode that starts after learning starts is acted by the transformer
DAGGER = ["--mode", "accelerate", "--algo", "td3", "--bc-data", "dagger", "--dagger-fraction", "1.0",
          "--stage1-steps", "500"]


def case_args(name: str) -> list[str]:
    if name == "accelerate-lstm-hopper":
        return HOPPER_MASKED
    if name == "accelerate-td3-dagger":
        return [*PENDULUM_SHORT, *DAGGER]
    return [*PENDULUM_SHORT, *CASES[name]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs each case once, on first use; {name: (run_dir, stdout)}."""
    root = tmp_path_factory.mktemp("e2e")
    done: dict[str, tuple] = {}

    def get(name: str):
        if name not in done:
            run_dir = root / name
            out = train_ok([*case_args(name), "--run-dir", run_dir])
            done[name] = (run_dir, out)
        return done[name]

    return get


@pytest.mark.parametrize("name", [*CASES, "accelerate-lstm-hopper"])
def test_train_writes_a_complete_run_directory(name, runs):
    run_dir, out = runs(name)
    mode, algo = ("accelerate", "td3") if name == "accelerate-lstm-hopper" else name.split("-")[:2]
    # stdout ends with the summary as one JSON line; summary.json holds the same
    summary = read_summary(run_dir)
    assert json.loads(out.strip().splitlines()[-1]) == summary
    assert len(SUMMARY_KEYS) > 10 and set(SUMMARY_KEYS) <= set(summary)
    assert summary["env_steps"] == 600 and summary["mode"] == mode and summary["algo"] == algo
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["mode"] == mode and cfg["algo"] == algo and cfg["total_steps"] == 600 and "version" in cfg
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    assert state["env_step"] == 600

    assert read_header(run_dir) == METRIC_COLUMNS
    rows = read_metrics(run_dir)
    evals = eval_rows(rows)
    assert all(math.isfinite(float(r["return_mean"])) for r in evals)
    assert {int(r["episodes"]) for r in evals} == {2}
    assert max(int(r["env_step"]) for r in evals) == 600
    policies = {r["policy"] for r in evals}
    trained = [r for r in evals if int(r["env_step"]) > 200]
    loss_col = "alpha" if algo == "sac" else "actor_loss"
    assert trained and all(r["critic_loss"] and r[loss_col] for r in trained), "RL losses are logged"
    # the last evaluation of each policy is the summary's final return
    last = {r["policy"]: float(r["return_mean"]) for r in evals if r["policy"] != "random"}
    assert summary["final_return"] == pytest.approx(last)

    if name in ("accelerate-td3", "scratch-td3", "accelerator-sac"):
        # one RL update per env step from step 200 (learning starts) to 600, both stages; two BC
        # rounds (steps 200 and 300) of 5 updates before the switch at 300
        assert summary["rl_updates"] == 401
        assert summary["bc_updates"] == (10 if mode == "accelerate" else 0)
        assert set(summary["stage_updates_per_s"]) == set(summary["stage_steps_per_s"])
    switches = [r for r in rows if r["event"].startswith("switch")]
    if mode == "accelerate":
        assert {r["stage"] for r in evals} == {"stage1", "stage2"}
        assert policies == {"random", "accelerator", "transformer"}
        assert len(switches) == 1 and int(switches[0]["env_step"]) == 300 == summary["switch_step"]
        assert summary["switch_reason"] and summary["switch_reason"] in switches[0]["event"]
        # the switch (at 300, between evaluations) closes stage 1 with the losses since step 200
        assert switches[0]["stage"] == "stage1" and not switches[0]["return_mean"]
        assert switches[0]["critic_loss"] and switches[0]["bc_loss"], "stage 1's last losses are logged"
        stage1 = [r for r in evals if r["stage"] == "stage1"]
        stage2 = [r for r in evals if r["stage"] == "stage2"]
        assert all(int(r["env_step"]) <= 300 for r in stage1) and all(int(r["env_step"]) > 300 for r in stage2)
        assert {r["policy"] for r in stage2} == {"transformer"}
        assert any(r["bc_loss"] for r in stage1), "BC loss is logged in stage 1"
        assert stage2 and not any(r["bc_loss"] or r["critic_bc_loss"] for r in stage2), "no stale stage-1 loss"
        assert set(state["nets"]) >= {"accelerator", "transformer", "critic"}
    else:
        assert not switches and summary["switch_step"] is None
        assert {r["stage"] for r in evals} == {mode}
        assert policies == {"transformer" if mode == "scratch" else "accelerator"}
        assert not any(r["bc_loss"] for r in evals)
        assert ("transformer" in state["nets"]) == (mode == "scratch")
        assert ("accelerator" in state["nets"]) == (mode == "accelerator")
    if name == "accelerate-td3-rollouts":
        assert cfg["bc_data"] == "rollouts" and cfg["num_envs"] == 2
        assert summary["teacher_steps"] == 2 * 200  # one 200-step teacher episode per BC round (200, 300)
    else:
        assert summary.get("teacher_steps", 0) == 0
    if name == "accelerate-lstm-hopper":
        assert summary["accelerator"] == "lstm" and cfg["obs_mask"] == "velocities"
        assert state["nets"]["accelerator"]["encoder.inp.weight"].shape[1] == 5  # Hopper positions only


def test_auto_switch_at_the_cap_names_the_cap(runs):
    run_dir, _ = runs("accelerate-sac")
    reason = read_summary(run_dir)["switch_reason"]
    assert "stage1-steps" not in reason and ("cap" in reason or "switch-max-steps" in reason), reason


@pytest.mark.parametrize("name,policy,which", [("accelerate-td3", "transformer", "latest"),
                                               ("accelerator-sac", "accelerator", "best"),
                                               ("accelerate-lstm-hopper", "transformer", "latest")])
def test_eval_prints_one_json_line(name, policy, which, runs):
    run_dir, _ = runs(name)
    cli = run_cli if name == "accelerate-td3" else cli_here  # one in a fresh interpreter: nothing else on stdout
    rc, out, err = cli(["eval", run_dir, "--episodes", "2", "--checkpoint", which])
    assert rc == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert res["policy"] == policy and res["episodes"] == 2 and res["checkpoint"] == which
    assert res["return_min"] <= res["return_mean"] <= res["return_max"]


def test_plot_compares_runs(runs, tmp_path):
    a, _ = runs("accelerate-td3")
    b, _ = runs("scratch-td3")
    out = tmp_path / "x.png"
    rc, stdout, err = cli_here(["plot", a, b, "--out", out])
    assert rc == 0, err
    assert stdout.strip() == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_same_seed_gives_identical_metrics(runs, tmp_path):
    first, _ = runs("accelerate-sac")
    train_ok([*case_args("accelerate-sac"), "--run-dir", tmp_path / "again"])
    assert comparable(read_metrics(tmp_path / "again")) == comparable(read_metrics(first))
    assert read_summary(tmp_path / "again")["final_return"] == read_summary(first)["final_return"]


def test_another_seed_gives_different_metrics(runs, tmp_path):
    first, _ = runs("scratch-td3")
    train_ok([*case_args("scratch-td3"), "--seed", "1", "--run-dir", tmp_path / "seed1"])
    a = [r["return_mean"] for r in eval_rows(read_metrics(first))]
    b = [r["return_mean"] for r in eval_rows(read_metrics(tmp_path / "seed1"))]
    assert a != b


# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An in-process accelerate run on masked Pendulum (LSTM accelerator, C = 10), keeping the
    Trainer so its in-memory networks can be compared with what load_policy rebuilds."""
    run_dir = tmp_path_factory.mktemp("inproc") / "run"
    cfg = build_config({"env": "Pendulum-v1", "obs_mask": "velocities", "total_steps": 500, "learning_starts": 150,
                        "stage1_steps": "250", "eval_every": 250, "eval_episodes": 1, "checkpoint_every": 250,
                        "bc_every": 50, "bc_updates": 5, "d_model": 32, "d_ff": 64, "hidden_size": 32, "n_heads": 2,
                        "batch_size": 32, "bc_batch_size": 32, "buffer_size": 2000, "stage2_buffer_size": 500,
                        "device": "cpu", "run_dir": str(run_dir)})
    run_dir.mkdir(parents=True)
    trainer = Trainer(cfg, run_dir)
    (run_dir / "config.json").write_text(cfg.to_json() + "\n")
    trainer.run()
    return trainer, run_dir


def test_loaded_policy_equals_the_trained_networks(trained):
    trainer, run_dir = trained
    g = torch.Generator().manual_seed(0)
    window = torch.randn(16, 10, 2, generator=g)
    mask = torch.arange(9, -1, -1)[None, :] <= torch.arange(16).clamp(max=9)[:, None]
    for which, net in (("transformer", trainer.transformer), ("accelerator", trainer.accelerator)):
        policy = load_policy(run_dir, which)
        with evaluating(net), torch.no_grad():  # (CPU LSTM kernels differ by 1e-8 with and without grad)
            expected = net.act(window, mask)
            assert torch.equal(policy.actor.act(window, mask), expected), which
    assert isinstance(load_policy(run_dir, "accelerator").actor.encoder, LSTMEncoder)


def test_predict_on_raw_observations_equals_the_actor_on_windows(trained):
    trainer, run_dir = trained
    policy, again = load_policy(run_dir), load_policy(run_dir)
    keep, C = list(policy.spec.keep), 10
    assert keep == [0, 1]
    env = gym.make("Pendulum-v1")
    low, high = env.action_space.low, env.action_space.high
    try:
        for episode in range(2):
            obs, _ = env.reset(seed=episode)
            policy.reset()
            again.reset()
            history = []
            for _ in range(14):  # past the context length
                history.append(obs[keep].astype(np.float32))
                n = len(history)
                window = [history[max(0, n - C + j)] if n - C + j >= 0 else history[0] for j in range(C)]
                mask = [n - C + j >= 0 for j in range(C)]
                with evaluating(trainer.transformer), torch.no_grad():
                    unit = trainer.transformer.act(torch.tensor(np.stack(window))[None], torch.tensor([mask]))[0]
                expected = low + (unit.numpy() + 1.0) * (high - low) / 2.0
                action = policy.predict(obs)
                assert action.shape == env.action_space.shape
                np.testing.assert_allclose(action, expected, rtol=0, atol=1e-6)
                np.testing.assert_array_equal(again.predict(obs), action)
                obs, *_ = env.step(action)
    finally:
        env.close()


def test_predict_batch_matches_single(trained):
    _, run_dir = trained
    single, batch = load_policy(run_dir), load_policy(run_dir)
    rng = np.random.default_rng(0)
    seqs = rng.normal(size=(5, 3, 3)).astype(np.float32)  # 5 steps of 3 episodes
    singles = []
    for ep in range(3):
        single.reset()
        singles.append([single.predict(seqs[t, ep]) for t in range(5)])
    batch.reset()
    for t in range(5):
        np.testing.assert_allclose(batch.predict(seqs[t]), np.stack([singles[ep][t] for ep in range(3)]), atol=1e-6)


def test_dagger_lets_the_transformer_act_in_stage1_episodes(runs):
    run_dir, _ = runs("accelerate-td3-dagger")
    summary = read_summary(run_dir)
    # Pendulum episodes are 200 steps and learning starts at 200: the episode that starts at
    # step 200 began before learning started (accelerator), the one at 400 is the transformer's
    # until the switch at 500.
    assert summary["student_steps"] == 100
    assert read_summary(run_dir)["teacher_steps"] == 0


def test_predict_batch_restarts_single_episodes(trained):
    """Episodes of a batch that end at different steps: reset(envs) restarts only those windows,
    so every entry acts as a single-episode policy would."""
    _, run_dir = trained
    single, batch = load_policy(run_dir), load_policy(run_dir)
    rng = np.random.default_rng(1)
    seqs = rng.normal(size=(14, 2, 3)).astype(np.float32)
    ends = {0: {4}, 1: {9, 11}}  # entry -> steps after which its episode ends
    expected = np.zeros((14, 2, 1), np.float32)
    for ep in range(2):
        single.reset()
        for t in range(14):
            expected[t, ep] = single.predict(seqs[t, ep])
            if t in ends[ep]:
                single.reset()
    batch.reset()
    for t in range(14):
        np.testing.assert_allclose(batch.predict(seqs[t]), expected[t], atol=1e-6)
        ended = np.array([t in ends[0], t in ends[1]])
        if ended.any():
            batch.reset(ended if t != 9 else np.flatnonzero(ended))  # a mask, or indices
    with pytest.raises(ValueError, match="batch of 2"):
        batch.reset(np.ones(3, bool))
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        batch.reset([2])
