"""ManiSkill's GPU-batched path, on CPU: the BatchedEnv adapter and the trainer driven through it.

A fake ManiSkillVectorEnv (tests/fake_maniskill.py) stands in for the GPU simulator: torch
tensors, partial resets, final observations in the step's info, success flags, episodes of
different lengths per env ending by success (terminations) or by the time limit (truncations).
The real ManiSkill CPU simulator goes through the same adapter at the end (skipped where
ManiSkill or Vulkan is missing).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import assert_one_error_line, cli_here, comparable, eval_rows, read_metrics, tiny_config
from fake_maniskill import HIGH, LOW, STATE_DIM, FakeManiSkillVectorEnv, install

from accelerl.envs.batched import BatchedEnv
from accelerl.stages import Trainer

SPAN = HIGH - LOW


def sim_action(action: np.ndarray) -> np.ndarray:
    """What the simulator must receive for an action in [-1, 1]."""
    return LOW + (action + 1) * 0.5 * SPAN


# ------------------------------------------------------------------------------------------ adapter
def test_adapter_rescales_actions_and_hands_back_final_observations_of_exactly_the_envs_that_ended():
    vec = FakeManiSkillVectorEnv(3)
    env = BatchedEnv(vec, torch.device("cpu"), tuple(LOW), tuple(HIGH))
    obs = env.reset([10, 11, 12])
    assert obs.shape == (3, STATE_DIM) and obs[:, 0].tolist() == [0, 1, 2] and (obs[:, 2] == 0).all()
    gen = torch.Generator().manual_seed(0)
    terms = truncs = 0
    for _ in range(60):
        action = torch.rand(3, 2, generator=gen) * 2 - 1
        action[0] = torch.tensor([-1.0, 1.0])  # the bounds map onto the task's bounds exactly
        prev, out = obs, env.step(action)
        sent = vec.actions[-1]
        np.testing.assert_allclose(sent[0], [LOW[0], HIGH[1]])
        np.testing.assert_allclose(sent, sim_action(action.numpy()), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(out.ended, vec.ended[-1])
        np.testing.assert_allclose(out.rew_host, sent[:, 0], rtol=1e-6)
        ended, cont = np.flatnonzero(out.ended), ~out.ended
        if len(ended):
            final = out.final_obs
            assert final.shape == (len(ended), STATE_DIM)
            # the true last observation of the episode that ended, not the reset one
            assert (final[:, 1] == prev[ended, 1]).all() and (final[:, 2] == prev[ended, 2] + 1).all()
            np.testing.assert_allclose(final[:, 3:].numpy(), sent[ended], rtol=1e-6)
            assert (out.obs[ended, 2] == 0).all() and (out.obs[ended, 1] == prev[ended, 1] + 1).all()
        else:
            assert out.final_obs is None
        assert (out.obs[cont, 2] == prev[cont, 2] + 1).all() and (out.obs[cont, 1] == prev[cont, 1]).all()
        # success is the step's own flag (after an auto-reset ManiSkill keeps it in final_info)
        np.testing.assert_array_equal(out.success, out.term.numpy() > 0)
        assert ((out.term > 0) & (out.trunc > 0)).sum() == 0
        terms, truncs = terms + int(out.term.sum()), truncs + int(out.trunc.sum())
        obs = out.obs
    assert terms > 0 and truncs > 0  # both kinds of ending were exercised


def test_rgb_observations_are_the_base_camera_frame_in_chw_order_then_the_masked_state():
    vec = FakeManiSkillVectorEnv(2, rgb=True, image_size=4, cameras=2)
    env = BatchedEnv(vec, torch.device("cpu"), tuple(LOW), tuple(HIGH), rgb=True, keep=(2, 0))
    env.reset([0, 1])
    raw = vec._obs()  # the simulator's own observation after the step below
    out = env.step(torch.zeros(2, 2))
    raw = vec._obs()
    frame = raw["rgb"][..., :3].numpy().transpose(0, 3, 1, 2).reshape(2, -1)  # base camera only, CHW
    assert out.obs.shape == (2, 3 * 16 + 2)
    np.testing.assert_array_equal(out.obs[:, :48].numpy(), frame)
    assert out.obs[:, 48:].tolist() == [[1.0, 0.0], [1.0, 1.0]]  # (step, env index): the mask's order


# ------------------------------------------------------------------------------------------ trainer
def fake_config(tmp_path, **overrides):
    values = {"env": "ManiSkill/FakeCube-v1", "num_envs": 4, "total_steps": 600, "learning_starts": 100,
              "stage1_steps": "300", "eval_every": 200, "eval_episodes": 2, "bc_every": 100, "bc_updates": 3,
              "checkpoint_every": 200, "updates_per_step": 0.25, **overrides}
    return tiny_config(tmp_path, **values)


def stream_checks(buffer, history: dict, env: int, cut: int | None = None) -> int:
    """Env ``env``'s rows, in ring order: consecutive rows of one episode are consecutive steps,
    a final row closes exactly the episodes that ended (at their last step, with the step's
    term/trunc flags), and nothing links across episodes. ``cut``: the row where a resume ended
    an episode that was still running (a final row without term or trunc). Returns the number of
    final rows."""
    n = int(buffer.size[env])
    assert n < buffer.rows, "the test needs a ring that has not wrapped"
    obs = buffer.obs[:n, env].numpy()
    is_transition, has_next = buffer.is_transition[:n, env].numpy(), buffer.has_next[:n, env].numpy()
    assert (obs[:, 0] == env).all()
    finals = 0
    for r in range(n):
        if has_next[r]:
            assert obs[r + 1, 1] == obs[r, 1] and obs[r + 1, 2] == obs[r, 2] + 1
        if not is_transition[r] and r == cut and (env, int(obs[r, 1])) not in history:
            # reached from the episode's previous step, if it had one, which bootstraps from it
            assert has_next[r - 1] == (obs[r, 2] > 0) and not buffer.term[r - 1, env] and not buffer.trunc[r - 1, env]
        elif not is_transition[r]:  # a final row: the true last observation of an episode that ended
            finals += 1
            kind, length = history[(env, int(obs[r, 1]))]
            assert r > 0 and has_next[r - 1] and obs[r, 2] == length
            assert bool(buffer.term[r - 1, env]) == (kind == "term") and bool(buffer.trunc[r - 1, env]) == (kind == "trunc")
    return finals


def check_sampled_windows(buffer, history: dict, context: int) -> None:
    """Sampled windows never cross an episode, and a truncated episode's last transition
    bootstraps from its true final observation (term = 0) while a terminated one does not."""
    batch = buffer.sample(256, context, torch.Generator().manual_seed(1))
    for obs, mask, nxt, term in zip(batch.obs, batch.mask, batch.next_obs, batch.term, strict=True):
        real = obs[mask]
        assert (real[:, 1] == real[-1, 1]).all() and (real[:, 0] == real[-1, 0]).all()
        assert torch.equal(real[:, 2], real[-1, 2] - torch.arange(len(real) - 1, -1, -1, dtype=real.dtype))
        last = nxt[-1]
        assert last[1] == obs[-1, 1] and last[2] == obs[-1, 2] + 1
        kind, length = history.get((int(last[0]), int(last[1])), (None, None))
        assert bool(term) == (kind == "term" and last[2] == length)


@pytest.mark.parametrize(("mode", "algo"), [("accelerate", "td3"), ("scratch", "sac"), ("accelerator", "sac")])
def test_the_trainer_runs_every_mode_on_batched_envs(mode, algo, tmp_path, monkeypatch):
    made: list[FakeManiSkillVectorEnv] = []
    install(monkeypatch, made)
    cfg = fake_config(tmp_path, mode=mode, algo=algo, stage2_buffer_size=1000 if mode == "accelerate" else 500)
    trainer = Trainer(cfg, tmp_path)
    assert trainer.collector.vector_kind == "batched" and isinstance(trainer.envs, BatchedEnv)
    summary = trainer.run()
    train_env = next(e for e in made if e.num_envs == 4)
    assert summary["env_steps"] == 600 and len(train_env.actions) == 150 and train_env.closed
    assert summary["switch_step"] == (300 if mode == "accelerate" else None)
    assert summary["switch_reason"] == ("reached --stage1-steps 300" if mode == "accelerate" else None)
    stages = {"accelerate": {"stage1", "stage2"}, "scratch": {"scratch"}, "accelerator": {"accelerator"}}[mode]
    assert {r["stage"] for r in eval_rows(read_metrics(tmp_path))} == stages  # metrics.csv's documented names
    # the stored actions are the actions the simulator received, in [-1, 1]
    buffer = trainer.buffer
    rows = int(buffer.size[0])
    stored = buffer.act[:rows, 0][buffer.is_transition[:rows, 0]].numpy()
    np.testing.assert_allclose(sim_action(stored[-5:]), np.stack(train_env.actions)[-5:, 0], rtol=1e-5, atol=1e-6)
    finals = sum(stream_checks(buffer, train_env.history, e) for e in range(4))
    if mode != "accelerate":  # one buffer from the first step: a final row for every episode that ended
        assert finals == int(np.stack(train_env.ended).sum())
    check_sampled_windows(buffer, train_env.history, cfg.context_len)
    evals = [r for r in read_metrics(tmp_path) if r["policy"] != "random" and r["return_mean"]]
    assert evals and all(r["success_once"] != "" for r in evals)


def test_the_rgb_run_stores_frames_as_bytes_and_uses_the_cnn(tmp_path, monkeypatch):
    install(monkeypatch)
    cfg = fake_config(tmp_path, obs="rgb", image_size=24, cnn_features=8, total_steps=240, stage1_steps="120",
                      learning_starts=60, eval_every=240, eval_episodes=1, bc_every=60)
    trainer = Trainer(cfg, tmp_path)
    summary = trainer.run()
    assert summary["accelerator"] == "cnn" and summary["env_steps"] == 240
    assert trainer.buffer.pixel_dims == 3 * 24 * 24 and trainer.buffer.pixels.dtype == torch.uint8


def test_a_resumed_batched_run_starts_fresh_episodes_and_never_links_across_the_restart(tmp_path, monkeypatch,
                                                                                          capsys):
    """ManiSkill's GPU state cannot be checkpointed: a resume starts a new episode in every env.
    The transition each env had in flight has no stored next observation, so its row becomes a
    final row (never sampled, counted by the sampler's bound), and the first row after the
    restart starts an episode. Callbacks hear of each start with the config and the step resumed
    from, and the resumed run's files carry on from the first's."""
    from accelerl import checkpoint

    made: list[FakeManiSkillVectorEnv] = []
    install(monkeypatch, made)
    starts = []

    def on_start(event):
        if event.kind == "start":
            starts.append(dict(event.metrics))

    cfg = fake_config(tmp_path, mode="accelerator", algo="td3", total_steps=400)
    Trainer(cfg, tmp_path, callbacks=[on_start]).run()
    before = next(e for e in made if e.num_envs == 4)
    state = checkpoint.load(tmp_path / "checkpoints" / "latest.pt")
    first_rows = read_metrics(tmp_path)
    # best.pt follows the accelerator, the one policy an --mode accelerator run trains (the first of equals)
    scored = [(float(r["return_mean"]), -int(r["env_step"])) for r in first_rows
              if r["return_mean"] and r["env_step"] != "0"]
    best = checkpoint.load(tmp_path / "checkpoints" / "best.pt")
    assert (best["env_step"], round(best["return"], 6)) == (-max(scored)[1], round(max(scored)[0], 6))
    assert "transformer" not in best["nets"] and "accelerator" in best["nets"]
    stale = tmp_path / "checkpoints" / ".latest.pt.tmp"  # what a kill mid-write leaves
    stale.write_bytes(b"half a checkpoint")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the progress bar, as in a terminal
    cfg.total_steps = 600
    trainer = Trainer(cfg, tmp_path, callbacks=[on_start])
    summary = trainer.run(state)
    assert [s["resumed_from"] for s in starts] == [None, 400] and starts[1]["config"]["total_steps"] == 600
    assert starts[0]["config"]["total_steps"] == 400 and starts[0]["config"]["env"] == cfg.env
    assert (f"resumed at step {state['env_step']} with a fresh episode in every env: the GPU simulator's state "
            "is not in the checkpoint") in capsys.readouterr().out
    assert not stale.exists()
    assert (trainer.logger.bar.total, trainer.logger.bar.initial) == (600, state["env_step"])
    rows = read_metrics(tmp_path)  # the first run's rows, then the resumed run's
    assert {r["policy"] for r in rows if r["return_mean"]} == {"accelerator"}  # --mode accelerator
    assert comparable(rows[:len(first_rows)]) == comparable(first_rows) and state["env_step"] == 400
    assert rows[len(first_rows):] and all(int(r["env_step"]) > 400 for r in rows[len(first_rows):])
    after = next(e for e in made if e.num_envs == 4 and e is not before)
    assert summary["env_steps"] == 600 and len(after.actions) == 50
    buffer = trainer.buffer
    for e in range(4):
        last = int(state["buffer"]["ptr"][e]) - 1  # the last row the first run wrote
        assert not buffer.is_transition[last, e] and not buffer.has_next[last, e]
        assert buffer.ep_step[last + 1, e] == 0 and buffer.obs[last + 1, e, 2] == 0
        stream_checks(buffer, {**before.history, **after.history}, e, cut=last)
    # the cut rows are counted among the rows the sampler knows it cannot draw
    assert buffer._n_final == sum(int((~buffer.is_transition[:int(buffer.size[e]), e]).sum()) for e in range(4))
    check_sampled_windows(buffer, {**before.history, **after.history}, cfg.context_len)


@pytest.mark.parametrize("saved", ["gpu", "cpu"])
def test_a_restore_without_simulator_state_starts_fresh_episodes_on_fresh_seeds_counted_from_zero(
        tmp_path, monkeypatch, saved):
    """On the GPU simulator, restoring a checkpoint (its own, with no simulator state, or a CPU
    run's state, which cannot go into a GPU simulator) resets every env on seeds of its own: one
    per env, inside the 31-bit range every simulator takes, none a training seed, other ones at
    another step; the new episodes' training returns start from zero."""
    import pickle

    from accelerl.evaluation import training_seeds

    made: list[FakeManiSkillVectorEnv] = []
    install(monkeypatch, made)
    cfg = fake_config(tmp_path, mode="accelerator", algo="td3", seed=3000, learning_starts=1000)
    trainer = Trainer(cfg, tmp_path)
    collector = trainer.collector
    env = next(e for e in made if e.num_envs == 4)
    reset_seeds: list[list[int]] = []
    original_reset = env.reset

    def reset(*, seed=None, options=None):
        if seed is not None:
            reset_seeds.append(list(seed))
        return original_reset(seed=seed, options=options)

    env.reset = reset
    collector.reset()
    blob = collector.env_state() if saved == "gpu" else pickle.dumps({"vector": {}, "envs": []})
    for restore in range(2):
        for _ in range(5 + restore):
            trainer._collect()  # uniform random actions (before learning starts)
        collector.train_returns.clear()
        collector.restore_env_state(blob)
        assert collector.restarted_episodes
        seeds = reset_seeds[-1]
        assert len(reset_seeds) == restore + 2 and len(set(seeds)) == 4
        assert all(0 <= s < 2**31 for s in seeds) and not set(seeds) & set(training_seeds(cfg.seed, 4))
        steps_before = len(env.actions)
        for _ in range(9):  # every episode ends within the time limit of 9 steps
            trainer._collect()
        returns, expected = np.zeros(4), []
        for action, ended in zip(env.actions[steps_before:], env.ended[steps_before:], strict=True):
            returns += action[:, 0]  # the fake's reward is the first action coordinate
            for i in np.flatnonzero(ended):
                expected.append(returns[i])
                returns[i] = 0.0
        assert list(collector.train_returns) == pytest.approx(expected)
    assert not set(reset_seeds[1]) & set(reset_seeds[2])  # another step, other seeds


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("flags", "message"), [
    (["--env", "ManiSkill/PushCube-v1", "--sim-backend", "physx_cuda", "--device", "cpu"], "needs --device cuda"),
    (["--env", "Pendulum-v1", "--sim-backend", "physx_cpu"], "is for --env ManiSkill"),
])
def test_sim_backend_misuse_is_one_line(flags, message, tmp_path):
    code, _, err = cli_here(["train", *flags, "--run-dir", tmp_path / "run"])
    assert_one_error_line(code, err, message)


def test_the_gpu_simulator_without_cuda_is_one_line(monkeypatch):
    from accelerl.envs.batched import uses_gpu_sim
    from accelerl.errors import ConfigError

    cfg = fake_config("/tmp/unused", sim_backend="physx_cuda", device="auto")
    with pytest.raises(ConfigError, match="needs CUDA"):
        uses_gpu_sim(cfg, torch.device("cpu"))
    assert uses_gpu_sim(fake_config("/tmp/unused"), torch.device("cuda"))  # auto: the GPU sim where CUDA is used
    assert not uses_gpu_sim(fake_config("/tmp/unused"), torch.device("cpu"))
    assert not uses_gpu_sim(fake_config("/tmp/unused", sim_backend="physx_cpu"), torch.device("cuda"))


def test_maniskill_speed_benchmark_smoke(tmp_path, monkeypatch, capsys):
    """The ManiSkill speed table on the fake batched env: a row per mode and stage, rates > 0, and
    ManiSkill's own SAC example marked as not run when its path is not given."""
    import importlib.util
    from pathlib import Path

    from accelerl.api import train
    from accelerl.cli import train_overrides_parser

    install(monkeypatch)
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "maniskill_speed.py"
    spec = importlib.util.spec_from_file_location("maniskill_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    parse = train_overrides_parser()
    monkeypatch.setattr(bench, "train_run", lambda flags, run_dir: train(run_dir=run_dir, **parse(flags)))
    tiny = ("--batch-size 32 --bc-batch-size 32 --hidden-size 32 --d-model 32 --d-ff 64 --n-heads 2 "
            "--buffer-size 2000 --stage2-buffer-size 500 --bc-every 100 --bc-updates 2")
    bench.main(["--env", "ManiSkill/FakeCube-v1", "--num-envs", "4", "--steps", "400", "--learning-starts", "100",
                "--device", "cpu", "--extra", tiny, "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    for what in ("accelerl --mode accelerator", "accelerl --mode accelerate, stage1",
                 "accelerl --mode accelerate, stage2", "accelerl --mode scratch"):
        assert f"| {what} |" in out
    assert "| ManiSkill's SAC example | not run |" in out
    (csv_path,) = tmp_path.glob("maniskill-speed-*.csv")
    assert csv_path.read_text().count("\n") == 6


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("PhysX GPU memory allocation failed (gpu memory config)")])
def test_more_envs_than_the_gpu_holds_is_one_clear_error(error, monkeypatch):
    from fake_maniskill import fake_spec

    from accelerl.envs import batched
    from accelerl.errors import ConfigError

    def opener(*args):
        raise error

    monkeypatch.setattr(batched, "open_maniskill_vector", opener)
    with pytest.raises(ConfigError, match="4096 ManiSkill envs do not fit in the GPU's memory; lower --num-envs"):
        batched.make_batched_env(fake_spec(), 4096, torch.device("cpu"))


def test_an_unrelated_simulator_error_is_not_called_a_memory_problem(monkeypatch):
    from fake_maniskill import fake_spec

    from accelerl.envs import batched

    def opener(*args):
        raise RuntimeError("some other PhysX failure")

    monkeypatch.setattr(batched, "open_maniskill_vector", opener)
    with pytest.raises(RuntimeError, match="some other PhysX failure"):
        batched.make_batched_env(fake_spec(), 8, torch.device("cpu"))
