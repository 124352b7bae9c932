"""The hand-over to stage 2 inside the Trainer (no training needed)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import QuietLogger, close_envs, tiny_config

from accelerl.algos import SAC, TD3
from accelerl.config import build_config
from accelerl.stages import Trainer


def tiny_cfg(algo: str, tmp_path):
    return tiny_config(tmp_path, algo=algo)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_enter_stage2_keeps_critic_targets_and_alpha(algo, tmp_path):
    trainer = Trainer(tiny_cfg(algo, tmp_path), tmp_path)
    try:
        old = trainer.rl
        assert old.actor is trainer.accelerator
        if algo == "sac":
            with torch.no_grad():
                old.log_alpha.fill_(math.log(0.123))
        critic, critic_target = old.critic, old.critic_target
        trainer._enter_stage2()
        new = trainer.rl
        assert isinstance(new, TD3 if algo == "td3" else SAC) and new is not old
        assert trainer.stage == "stage2" and trainer.acting_policy == "transformer"
        assert new.actor is trainer.transformer
        assert new.critic is critic and new.critic_target is critic_target
        assert not new.actor_opt.state and not new.critic_opt.state  # optimisers restart
        if algo == "sac":
            assert float(new.alpha) == pytest.approx(0.123)
            assert new.target_entropy == -trainer.act_dim
        else:  # a fresh target of the transformer, not of the accelerator
            for p, q in zip(new.actor_target.parameters(), trainer.transformer.parameters(), strict=True):
                assert torch.equal(p, q)
        assert trainer.buffer.capacity >= 500 and trainer.buffer.capacity < 2000  # the small stage-2 buffer
        assert trainer._stage1_buffer.capacity >= 2000
    finally:
        close_envs(trainer)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_enter_stage2_hands_a_distilled_transformer_critic_to_the_new_agent(algo, tmp_path):
    """--critic transformer: stage 2's critic is the distilled transformer critic, with a fresh
    target copy of it (not the accelerator's critic or its target)."""
    trainer = Trainer(tiny_config(tmp_path, algo=algo, critic="transformer"), tmp_path)
    try:
        distilled, accelerator_critic = trainer.learner.transformer_critic, trainer.rl.critic
        trainer._enter_stage2()
        new = trainer.rl
        assert new.critic is distilled and new.critic is not accelerator_critic
        assert new.critic_target is not distilled
        for p, q in zip(new.critic_target.parameters(), distilled.parameters(), strict=True):
            assert torch.equal(p, q)
    finally:
        close_envs(trainer)


def test_stage_two_updates_wait_for_a_batch_of_transitions_in_the_new_buffer(tmp_path):
    """After the switch, updates start at once when the warm start brought at least a batch of
    transitions, else a batch's worth of env steps later."""
    cfg = tiny_config(tmp_path, learning_starts=1000)
    trainer = Trainer(cfg, tmp_path)
    try:
        trainer.collector.reset()
        for _ in range(100):
            trainer._collect()
        learner, batch = trainer.learner, cfg.batch_size
        for warm, first in ((batch, 500), (batch + 1, 500), (batch - 1, 500 + batch), (0, 500 + batch)):
            learner.delay_updates(500, warm)
            assert learner.train(trainer.buffer, first - 1) == 0 and learner.train(trainer.buffer, first) == 1
    finally:
        close_envs(trainer)


def test_rl_updates_pay_a_fractional_debt_on_batches_of_the_runs_generator(tmp_path, monkeypatch):
    """--updates-per-step 0.25: one update every fourth env step (the debt carries over); each
    batch is drawn with the run's own generator, so a resumed run draws the same ones."""
    import dataclasses

    cfg = tiny_config(tmp_path, learning_starts=1000, updates_per_step=0.25)
    trainer = Trainer(cfg, tmp_path)
    try:
        trainer.collector.reset()
        for _ in range(100):
            trainer._collect()
        learner, batches = trainer.learner, []
        real_update = learner.rl.update
        monkeypatch.setattr(learner.rl, "update", lambda batch: batches.append(batch) or real_update(batch))
        draw_gen = torch.Generator().set_state(learner.gen.get_state())
        learner.update_start = 0
        assert [learner.train(trainer.buffer, 100 + i) for i in range(8)] == [0, 0, 0, 1, 0, 0, 0, 1]
        for batch in batches:
            expected = trainer.buffer.sample(cfg.batch_size, learner.rl_context, draw_gen)
            assert all(torch.equal(getattr(batch, f.name), getattr(expected, f.name)) for f in dataclasses.fields(batch))
    finally:
        close_envs(trainer)


def test_a_checkpoint_keeps_the_switch_rule_mid_decision(tmp_path):
    """Resume in the middle of an automatic switch decision: the streak, the BC-loss history and
    the random-policy baseline come back, so the resumed run switches when the original would."""
    cfg = tiny_cfg("td3", tmp_path)
    cfg.stage1_steps = "auto"
    cfg.switch_max_steps = 900
    trainer = Trainer(cfg, tmp_path)
    trainer.logger = QuietLogger()
    obs, _ = trainer.envs.reset(seed=0)
    trainer.tracker.reset(torch.as_tensor(obs, dtype=torch.float32))
    rule = trainer.switch_rule
    rule.random_return = -1200.0
    assert not rule.observe(300, -300.0, -350.0, 0.5)[0]  # close (94%), BC loss history too short
    assert rule.streak == 1 and rule.bc_history == [0.5]
    trainer.save()
    from accelerl import checkpoint

    state = checkpoint.load(tmp_path / "checkpoints" / "latest.pt")
    resumed = Trainer(cfg, tmp_path)
    resumed._load_state(state)
    assert resumed.switch_rule.state_dict() == rule.state_dict()
    assert resumed.switch_rule.cap == 900
    for t in (trainer, resumed):
        close_envs(t)


def test_a_resume_with_another_total_takes_the_default_cap_from_it(tmp_path):
    """The default auto-switch cap is half of --total-steps: a resume that changes the total
    must move the cap with it (a stale cap above a shrunk total would never reach stage 2),
    while what the rule has learned (streak, BC history, random return) comes back."""
    from accelerl import checkpoint

    cfg = tiny_cfg("td3", tmp_path)
    cfg.stage1_steps = "auto"
    trainer = Trainer(cfg, tmp_path)
    trainer.logger = QuietLogger()
    obs, _ = trainer.envs.reset(seed=0)
    trainer.tracker.reset(torch.as_tensor(obs, dtype=torch.float32))
    assert trainer.switch_rule.cap == 500
    trainer.switch_rule.random_return = -1200.0
    trainer.switch_rule.observe(300, -300.0, -350.0, 0.5)
    trainer.save()
    state = checkpoint.load(tmp_path / "checkpoints" / "latest.pt")
    shorter = tiny_cfg("td3", tmp_path)
    shorter.stage1_steps, shorter.total_steps = "auto", 600
    resumed = Trainer(shorter, tmp_path)
    resumed._load_state(state)
    assert resumed.switch_rule.cap == 300
    assert (resumed.switch_rule.streak, resumed.switch_rule.bc_history, resumed.switch_rule.random_return) == (
        1, [0.5], -1200.0)
    for t in (trainer, resumed):
        close_envs(t)


def test_the_cnn_accelerator_is_kept_as_it_was_at_the_switch(tmp_path):
    """It reads its critic's encoder, which stage 2 trains on: at the switch it gets its own
    frozen copy, so a stage-2 checkpoint still holds the accelerator that was switched from,
    and a stage-2 resume loads it back without tying it to the critic again."""
    from accelerl import checkpoint

    cfg = tiny_cfg("td3", tmp_path)
    cfg.env, cfg.pixels, cfg.image_size, cfg.cnn_features, cfg.buffer_size = "Walker2d-v5", "rgb", 24, 8, 600
    cfg = build_config(cfg.to_dict())
    trainer = Trainer(cfg, tmp_path)
    trainer.logger = QuietLogger()
    obs, _ = trainer.envs.reset(seed=0)
    trainer.tracker.reset(torch.as_tensor(obs, dtype=torch.float32))
    critic = trainer.rl.critic
    assert trainer.accelerator.encoder.inner is critic.enc1
    at_switch = {k: v.clone() for k, v in trainer.accelerator.state_dict().items()}
    trainer._enter_stage2()
    with torch.no_grad():  # stage-2 TD updates move the critic's encoder
        for p in critic.enc1.parameters():
            p.add_(0.1)
    kept = trainer.accelerator.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in at_switch.items())
    assert not any(p.requires_grad for p in trainer.accelerator.encoder.inner.parameters())
    trainer.save()
    state = checkpoint.load(tmp_path / "checkpoints" / "latest.pt")
    resumed = Trainer(cfg, tmp_path)
    resumed._load_state(state)
    assert resumed.accelerator.encoder.inner is not resumed.rl.critic.enc1
    assert all(torch.equal(resumed.accelerator.state_dict()[k], v) for k, v in at_switch.items())
    assert all(torch.equal(a, b) for a, b in zip(resumed.rl.critic.enc1.parameters(), critic.enc1.parameters(),
                                                  strict=True))
    for t in (trainer, resumed):
        close_envs(t)


def test_without_the_warm_start_stage_two_starts_empty_but_keeps_each_envs_episode_step(tmp_path):
    """--no-stage2-warmstart: no stage-1 row is copied, yet the episodes in flight go on, so the
    first stage-2 rows carry on counting their episode's steps (the window's padding needs them)."""
    cfg = tiny_config(tmp_path, num_envs=2, stage2_warmstart=False, learning_starts=1000)
    trainer = Trainer(cfg, tmp_path)
    trainer.collector.reset()
    for _ in range(30):
        trainer._collect()
    stage1 = trainer.buffer
    trainer._enter_stage2()
    trainer.collector.warm_start(trainer._stage1_buffer, cfg.stage2_warmstart)
    assert trainer.buffer is not stage1 and int(trainer.buffer.size.sum()) == 0
    trainer._collect()
    assert trainer.buffer.ep_step[0].tolist() == [30, 30]
    close_envs(trainer)


def test_a_transformer_cnn_from_the_accelerator_is_its_frozen_copy_at_every_bc_round(tmp_path):
    """--transformer-cnn accelerator: in stage 1 the transformer's frame CNN is the critic
    encoder's, copied afresh at each BC round and frozen (BC moves only the rest of the
    transformer); from the switch on it trains."""
    cfg = tiny_cfg("td3", tmp_path)
    cfg.env, cfg.pixels, cfg.image_size, cfg.cnn_features, cfg.buffer_size = "Walker2d-v5", "rgb", 24, 8, 600
    cfg.transformer_cnn, cfg.bc_updates, cfg.learning_starts = "accelerator", 2, 1000
    cfg = build_config(cfg.to_dict())
    trainer = Trainer(cfg, tmp_path)
    trainer.logger = QuietLogger()
    trainer.collector.reset()
    for _ in range(20):
        trainer._collect()
    frame, teacher = trainer.transformer.encoder.frame, trainer.rl.critic.enc1.frame
    for _ in range(2):
        with torch.no_grad():  # the accelerator's TD updates move its critic's CNN between BC rounds
            for p in teacher.parameters():
                p.add_(0.1)
        before = {k: v.clone() for k, v in trainer.transformer.state_dict().items()}
        trainer.learner.distill(trainer.buffer)
        assert all(torch.equal(a, b) for a, b in zip(frame.state_dict().values(), teacher.state_dict().values(),
                                                      strict=True))
        assert not any(p.requires_grad for p in frame.parameters())
        after = trainer.transformer.state_dict()
        assert any(not torch.equal(after[k], v) for k, v in before.items() if not k.startswith("encoder.frame."))
    trainer._enter_stage2()
    assert all(p.requires_grad for p in frame.parameters())
    close_envs(trainer)


@pytest.mark.parametrize("seed", [0, 7, 25_000, 2**32 - 1])
def test_teacher_rollout_seeds_are_valid_and_apart_from_eval_and_training_seeds(seed):
    from accelerl.evaluation import eval_seeds, teacher_seeds, training_seeds

    teacher = {s for r in range(300) for s in teacher_seeds(seed, r, 10)}
    evaluation = {s for r in range(300) for s in eval_seeds(seed, r, 10)}
    training = set(training_seeds(seed, 16))
    # every seed fits the 32-bit RandomState that ManiSkill seeds its episodes with
    assert all(0 <= s < 2**32 for s in teacher | evaluation | training)
    assert len(teacher) == 3000 and len(evaluation) == 3000 and len(training) == 16
    assert not teacher & evaluation and not teacher & training


def test_the_switch_row_closes_stage_one_and_stage_two_starts_from_its_newest_transitions(tmp_path, monkeypatch,
                                                                                           capsys):
    """A two-stage run in process. metrics.csv's switch row: the step, stage1, the accelerator,
    ``switch: <reason>``, the wall time so far rounded as every row's, and the losses since the
    last evaluation; the stage-2 buffer starts with each env's newest stage-1 rows, in order
    (--stage2-warmstart); callbacks and the console hear of the switch with the reason and those
    losses. Around it: BC rounds from where updates start, one RL update per env step, step hooks
    at their interval (only to the callbacks due, with their metrics), the end hook with the
    summary, a last checkpoint off the schedule, best.pt's contents, and summary.json's figures."""
    import itertools
    import json
    import types

    from conftest import SUMMARY_KEYS, read_metrics

    import accelerl
    import accelerl.plots
    import accelerl.stages as stages
    from accelerl import checkpoint
    from accelerl.callbacks import Callback

    ticks = itertools.count()
    monkeypatch.setattr(stages, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks) * 0.0123457))
    seen = {}
    draw = accelerl.plots.plot_run

    def drawn(run_dir):  # curves.png: redrawn only when metrics.csv has rows it does not show
        seen.setdefault("drawn", []).append(len(read_metrics(run_dir)))
        return draw(run_dir)

    monkeypatch.setattr(accelerl.plots, "plot_run", drawn)

    class AtSwitch(Callback):
        every_steps = 100

        def on_step(self, event):
            seen.setdefault("steps", []).append((event.env_step, dict(event.metrics)))

        def on_end(self, event):
            seen["end"] = dict(event.metrics)

        def on_evaluation(self, event):
            seen.setdefault("random", []).append((event.env_step, event.metrics["random_return"]))

        def on_switch(self, event):
            seen.update(wall=trainer.wall_time, obs=trainer.buffer.obs.clone(), size=trainer.buffer.size.clone(),
                        metrics=event.metrics)

    class Sparse(Callback):  # step hooks reach only the callbacks whose interval came due
        every_steps = 300

        def on_step(self, event):
            seen.setdefault("sparse", []).append(event.env_step)

    class NoInterval(Callback):
        def on_step(self, event):
            seen.setdefault("unscheduled", []).append(event.env_step)

    cfg = tiny_config(tmp_path, num_envs=2, total_steps=600, stage1_steps="500", eval_every=200, bc_every=100,
                      checkpoint_every=250)
    trainer = Trainer(cfg, tmp_path, callbacks=[AtSwitch(), Sparse(), NoInterval()])
    stage1 = trainer.buffer
    asked = []  # a fixed --stage1-steps never asks the built-in rule
    trainer.switch_rule.observe = lambda *args: asked.append(args) or (False, "")
    summary = trainer.run()
    assert asked == []
    rows = read_metrics(tmp_path)
    (row,) = [r for r in rows if r["event"].startswith("switch")]
    evaluated = {(r["env_step"], r["policy"]) for r in rows if r["return_mean"]}
    assert evaluated == {("0", "random"), *((step, p) for step in ("0", "200", "400") for p in ("accelerator",
                                                                                                  "transformer")),
                         ("600", "transformer")}  # both policies in stage 1; the transformer alone after
    assert {(r["env_step"], r["stage"]) for r in rows if r["return_mean"]} == {
        ("0", "stage1"), ("200", "stage1"), ("400", "stage1"), ("600", "stage2")}  # the random row's too
    assert (row["env_step"], row["stage"], row["policy"]) == ("500", "stage1", "accelerator")
    assert summary["switch_reason"] == "reached --stage1-steps 500" and summary["switch_step"] == 500
    assert row["event"] == f"switch: {summary['switch_reason']}"
    assert summary["bc_updates"] == 5 * cfg.bc_updates  # BC rounds at 100 (where updates start), ..., 500
    # one update per env step: 2 per vector step of the 2 envs, at env steps 100, 102, ..., 500, then from 502
    assert summary["rl_updates"] == 201 * 2 + 50 * 2
    assert [step for step, _ in seen["steps"]] == [100, 200, 300, 400, 500, 600]  # step hooks, every 100 steps
    assert seen["sparse"] == [300, 600] and "unscheduled" not in seen
    for _, metrics in seen["steps"]:
        assert set(metrics) == {"train_return", "steps_per_s", "last_eval"} and metrics["steps_per_s"] > 0
        assert isinstance(metrics["steps_per_s"], float) and metrics["steps_per_s"] == round(metrics["steps_per_s"], 1)
        assert set(metrics["last_eval"]) == {"accelerator", "transformer"}  # from the evaluation at step 0 on
    # two envs: the first episodes (200 steps each) end at env step 400
    assert [type(m["train_return"]) for _, m in seen["steps"]] == [str] * 3 + [float] * 3
    assert seen["steps"][0][1]["train_return"] == ""
    assert row["wall_time"] == str(round(seen["wall"], 2)) and seen["wall"] > 0
    assert float(row["bc_loss"]) > 0 and float(row["critic_loss"]) > 0
    assert seen["metrics"]["reason"] == summary["switch_reason"]
    losses = seen["metrics"]["stage1_losses"]
    assert "bc_loss" in losses and {k: round(v, 6) for k, v in losses.items()} == {
        k: round(float(row[k]), 6) for k in losses}
    out = capsys.readouterr().out
    assert f"switched to stage 2 at step 500: {summary['switch_reason']}" in out and "stopped at" not in out
    assert seen["end"] == summary  # the end hook gets the summary
    # the random baseline is measured once, at step 0, and later evaluations say there is none
    (random_row,) = [r for r in rows if r["policy"] == "random"]
    assert seen["random"][0] == (0, pytest.approx(float(random_row["return_mean"])))
    assert [step for step, _ in seen["random"]] == [0, 200, 400, 600]
    assert all(value is None for _, value in seen["random"][1:])
    assert trainer.switch_rule.random_return == float(random_row["return_mean"])  # the rule's baseline
    assert checkpoint.load(tmp_path / "checkpoints" / "latest.pt")["env_step"] == 600  # the last, off schedule
    # best.pt: the transformer's best evaluation after the initial one (the first of equals)
    scored = [(float(r["return_mean"]), -int(r["env_step"])) for r in rows
              if r["return_mean"] and r["policy"] == "transformer" and r["env_step"] != "0"]
    best_return, best_step = max(scored)
    best = checkpoint.load(tmp_path / "checkpoints" / "best.pt")
    assert best.keys() == {"format_version", "config", "env_step", "return", "nets"}
    assert best["format_version"] == checkpoint.FORMAT_VERSION and best["config"] == cfg.to_dict()
    assert (best["env_step"], round(best["return"], 6)) == (-best_step, round(best_return, 6))
    assert best["nets"].keys() == {"critic", "accelerator", "transformer"}
    # summary.json: the documented keys, the run's figures, the throughput of each stage
    assert summary.keys() == set(SUMMARY_KEYS) and json.loads((tmp_path / "summary.json").read_text()) == summary
    assert {k: summary[k] for k in ("env", "mode", "algo", "accelerator", "seed", "device", "env_steps",
                                    "teacher_steps", "student_steps", "stop_reason", "accelerl_version")} == {
        "env": "Pendulum-v1", "mode": "accelerate", "algo": "td3", "accelerator": "mlp", "seed": cfg.seed,
        "device": "cpu", "env_steps": 600, "teacher_steps": 0, "student_steps": 0, "stop_reason": None,
        "accelerl_version": accelerl.__version__}
    assert summary["final_return"] == trainer.last_eval and summary["best_return"] == best["return"]
    assert summary["replay_bytes"] == trainer.buffer.nbytes
    assert summary["wall_time_s"] == round(trainer.wall_time, 1) > 0
    assert summary["steps_per_s"] == round(600 / trainer.wall_time, 1) and isinstance(summary["steps_per_s"], float)
    assert (tmp_path / "summary.json").read_text() == json.dumps(summary, indent=2) + "\n"  # for people to read
    for stage in ("stage1", "stage2"):
        seconds = trainer.stage_time[stage]
        assert summary["stage_steps_per_s"][stage] == round(trainer.stage_steps[stage] / seconds, 1) > 0
        assert summary["stage_updates_per_s"][stage] == round(trainer.stage_updates[stage] / seconds, 1) > 0
    assert isinstance(summary["stage_steps_per_s"]["stage1"], float)
    assert isinstance(summary["stage_updates_per_s"]["stage1"], float)
    assert trainer.stage_steps == {"stage1": 500, "stage2": 100}
    # the fake clock's intervals, each counted once in its stage and in the wall time
    assert trainer.wall_time == pytest.approx(sum(trainer.stage_time.values()))
    assert 0 < trainer.wall_time < next(ticks) * 0.0123457
    assert (tmp_path / "curves.png").stat().st_size > 0
    # drawn at the saves of steps 0, 250 and 500 (each after new rows) and at the end, after the
    # step-600 evaluation; not again for the summary, which adds no row
    assert seen["drawn"] == [3, 5, 8, 9] and len(rows) == 9
    keep = cfg.stage2_buffer_size // 2 - 1  # the newest rows that fit the new ring, one left free
    for e in range(2):
        n = min(int(stage1.size[e]), keep)
        src = (int(stage1.ptr[e]) - n + torch.arange(n)) % stage1.rows
        assert int(seen["size"][e]) == n > 0 and torch.equal(seen["obs"][:n, e], stage1.obs[src, e])


def test_a_non_finite_weight_stops_the_save_naming_the_network_the_weight_and_the_last_checkpoint(tmp_path):
    """A checkpoint never holds a NaN weight: the save stops with one line that says which weight,
    since when, and where the last good checkpoint is; a sampler that drew a row it must not has its
    own message (a bug to report, not a learning rate to lower)."""
    import re

    from accelerl.errors import NonFiniteError

    trainer = Trainer(tiny_config(tmp_path), tmp_path)
    try:
        key = next(k for k, v in trainer.transformer.state_dict().items() if v.is_floating_point())
        with torch.no_grad():
            trainer.transformer.state_dict()[key].view(-1)[0] = float("nan")
        expected = (f"transformer weight {key} became non-finite before step 0; stopped. The last good checkpoint "
                    f"is in {tmp_path / 'checkpoints'} (try a lower learning rate)")
        with pytest.raises(NonFiniteError, match=f"^{re.escape(expected)}$"):
            trainer.save()
        assert not (tmp_path / "checkpoints" / "latest.pt").exists()
        with torch.no_grad():
            trainer.transformer.state_dict()[key].view(-1)[0] = 0.0
        trainer.collector.env_step = 150
        trainer.learner.accumulate({"critic_loss": torch.tensor(float("inf"))})
        expected = (f"critic_loss became inf before step 150; stopped. The last good checkpoint is in "
                    f"{tmp_path / 'checkpoints'} (try a lower learning rate)")
        with pytest.raises(NonFiniteError, match=f"^{re.escape(expected)}$"):
            trainer.save()
        assert not (tmp_path / "checkpoints" / "latest.pt").exists()
        trainer.learner.loss_sums.clear()
        trainer.buffer.invalid_draws += 1
        with pytest.raises(RuntimeError, match=r"^replay sampling drew an unsampleable row; please report this as a bug$"):
            trainer.learner.check_finite(trainer.buffer, 0)
    finally:
        close_envs(trainer)


@pytest.mark.parametrize("mode,critic,nets", [
    ("accelerate", "accelerator", {"critic", "accelerator", "transformer"}),
    ("accelerate", "transformer", {"critic", "accelerator", "transformer", "transformer_critic"}),
    ("scratch", "accelerator", {"critic", "transformer"}),
    ("scratch", "transformer", {"critic", "transformer", "transformer_critic"}),
    ("accelerator", "accelerator", {"critic", "accelerator"}),
])
def test_each_mode_builds_only_its_networks_and_checkpoints_them_by_name(mode, critic, nets, tmp_path):
    """What a checkpoint's ``nets`` holds (load_policy and resume read them by these names): no
    accelerator in a scratch run, no transformer in an accelerator run; a scratch run with a
    transformer critic trains that critic itself."""
    trainer = Trainer(tiny_config(tmp_path, mode=mode, critic=critic), tmp_path)
    try:
        learner = trainer.learner
        saved = learner.networks()
        assert set(saved) == nets
        assert (learner.accelerator is None) == (mode == "scratch") and (learner.transformer is None) == (mode == "accelerator")
        owners = {"critic": learner.rl.critic, "accelerator": learner.accelerator, "transformer": learner.transformer,
                  "transformer_critic": learner.transformer_critic}
        for name, state in saved.items():
            assert state.keys() == owners[name].state_dict().keys()
            assert all(v.data_ptr() == owners[name].state_dict()[k].data_ptr() for k, v in state.items()), name
        if mode == "scratch" and critic == "transformer":
            assert learner.rl.critic is learner.transformer_critic
    finally:
        close_envs(trainer)


@pytest.mark.parametrize("mode", ["accelerate", "scratch"])
def test_only_a_pixel_accelerate_run_with_the_accelerators_cnn_freezes_the_transformers_cnn(mode, tmp_path):
    """The frozen CNN copy is for stage 1 of a pixel run that asks for it: a transformer with its
    own CNN trains every weight, in a two-stage run or a scratch one. (Asked for without frames or
    outside --mode accelerate, the copy is refused: test_cli_errors.py.)"""
    over = {"mode": mode, "transformer_cnn": "scratch", "env": "Walker2d-v5", "pixels": "rgb", "image_size": 24,
            "cnn_features": 8, "buffer_size": 600}
    trainer = Trainer(tiny_config(tmp_path, **over), tmp_path)
    try:
        assert not trainer.learner.student_cnn_frozen
        assert all(p.requires_grad for p in trainer.transformer.parameters())
    finally:
        close_envs(trainer)


@pytest.mark.parametrize("critic", ["accelerator", "transformer"])
def test_the_distiller_gets_the_runs_actor_ascent_and_compiles_with_the_run(critic, tmp_path, monkeypatch):
    """--bc-actor-ascent reaches the BC step, and --compile on compiles the BC steps (BC, and the
    critic distillation of a transformer critic) as it does the RL ones; off leaves them eager."""
    import accelerl.algos.bc as bc

    compiled = []
    monkeypatch.setattr(bc, "compile_step", lambda fn, device, prepare=None: compiled.append(fn) or fn)
    for mode, calls in (("off", 0), ("on", 2 if critic == "transformer" else 1)):
        compiled.clear()
        run = tmp_path / mode
        trainer = Trainer(tiny_config(run, critic=critic, bc_actor_ascent=0.25, compile=mode), run)
        try:
            assert trainer.learner.distiller.actor_ascent == 0.25
            assert len(compiled) == calls
        finally:
            close_envs(trainer)


def test_checkpoint_hooks_name_the_file_once_per_save_and_a_final_step_on_schedule_is_saved_once(tmp_path):
    """Every save (the first at step 0) tells the callbacks where it wrote, at its step and stage,
    and the run's folder; a run whose last step is on the checkpoint schedule is not saved twice there."""
    from accelerl.callbacks import Callback

    saves, run_dirs = [], set()

    class Saves(Callback):
        def on_checkpoint(self, event):
            saves.append((event.env_step, event.stage, dict(event.metrics)))
            run_dirs.add(event.run_dir)

    cfg = tiny_config(tmp_path, total_steps=300, stage1_steps="200", eval_every=150, bc_every=100,
                      checkpoint_every=150, eval_episodes=1)
    Trainer(cfg, tmp_path, callbacks=[Saves()]).run()
    path = {"path": str(tmp_path / "checkpoints" / "latest.pt")}
    assert saves == [(0, "stage1", path), (150, "stage1", path), (300, "stage2", path)]  # 0: before any update
    assert run_dirs == {tmp_path}  # where a user's callback writes beside the run


def test_a_plot_that_fails_is_one_warning_line_and_the_run_goes_on(tmp_path, monkeypatch):
    import accelerl.plots

    def broken(run_dir):
        raise ValueError(f"no axes for {run_dir.name}")

    monkeypatch.setattr(accelerl.plots, "plot_run", broken)
    trainer = Trainer(tiny_config(tmp_path / "run"), tmp_path / "run")
    try:
        said = []
        trainer.logger = type("Spy", (), {"message": lambda self, text: said.append(text), "rows_written": 1})()
        trainer._plot()
        assert said == ["warning: could not draw curves.png: no axes for run"]
    finally:
        close_envs(trainer)


def test_device_auto_is_cuda_where_there_is_one_and_cuda_without_one_is_one_error(monkeypatch):
    from accelerl.errors import ConfigError
    from accelerl.stages import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    with pytest.raises(ConfigError, match=r"^--device cuda was asked for but no CUDA device is available$"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda") == resolve_device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1") and resolve_device("cpu") == torch.device("cpu")


def test_the_seed_fixes_pythons_numpys_and_torchs_global_generators():
    """For what a user's env or callback draws from them: a run is reproducible from --seed."""
    import random

    import numpy as np

    from accelerl.stages import seed_everything

    def draws():
        return random.random(), float(np.random.random()), float(torch.rand(()))

    seed_everything(5)
    first = draws()
    seed_everything(5)
    assert draws() == first
    seed_everything(6)
    assert all(a != b for a, b in zip(draws(), first, strict=True))


@pytest.mark.parametrize("mode", ["accelerate", "scratch"])
def test_a_run_that_ends_before_learning_starts_reports_zero_updates(mode, tmp_path):
    """(And a scratch run's summary names no accelerator.)"""
    cfg = tiny_config(tmp_path, mode=mode, total_steps=60, learning_starts=100, stage1_steps="60", eval_every=60,
                      eval_episodes=1, checkpoint_every=60, bc_every=30)
    summary = Trainer(cfg, tmp_path).run()
    assert summary["env_steps"] == 60 and summary["rl_updates"] == 0 and summary["bc_updates"] == 0
    (stage,) = summary["stage_updates_per_s"]
    assert summary["stage_updates_per_s"][stage] == 0.0 and summary["stage_steps_per_s"][stage] > 0
    assert (summary["mode"], summary["accelerator"]) == ((mode, "mlp") if mode == "accelerate" else (mode, None))


def test_the_random_baseline_is_drawn_from_the_runs_seed_alone(tmp_path):
    """The step-0 random policy's actions come from a generator of their own seeded with --seed,
    so the baseline the switch rule measures from does not move with torch's global generator
    (which network initialisation, a user's code or a callback may have drawn from)."""
    from conftest import read_metrics

    returns = []
    for name, disturb in (("a", False), ("b", True)):
        (tmp_path / name).mkdir()
        cfg = tiny_config(tmp_path / name, total_steps=10, learning_starts=10, stage1_steps="5", eval_every=10,
                          eval_episodes=2, checkpoint_every=10)
        trainer = Trainer(cfg, tmp_path / name)
        if disturb:
            torch.manual_seed(12345)
        trainer.run()
        (row,) = [r for r in read_metrics(tmp_path / name) if r["policy"] == "random"]
        returns.append(row["return_mean"])
    assert returns[0] == returns[1]


def test_a_loss_that_became_nan_stops_the_run_at_the_next_evaluation_naming_its_step(tmp_path):
    from accelerl.callbacks import Callback
    from accelerl.errors import NonFiniteError

    class PoisonOnce(Callback):
        every_steps = 100

        def on_step(self, event):
            if event.env_step == 100:
                trainer.learner.accumulate({"critic_loss": torch.tensor(float("nan"))})

    cfg = tiny_config(tmp_path, total_steps=400, stage1_steps="300", eval_every=200, eval_episodes=1,
                      checkpoint_every=400)
    trainer = Trainer(cfg, tmp_path, callbacks=[PoisonOnce()])
    with pytest.raises(NonFiniteError, match="critic_loss became nan before step 200"):
        trainer.run()


def test_the_builtin_switch_rule_hears_every_stage_one_evaluation_and_rows_match_the_evaluation_hook(tmp_path, capsys):
    """--stage1-steps auto: after the initial evaluation, each stage-1 evaluation hands the rule
    (step, accelerator return, transformer return, BC loss since the last one), and the run switches
    with the rule's reason; not in stage 2. Each evaluation row carries the hook's wall time (to
    0.01 s), steps/s (to 0.1), train return and losses, and the hook's keys are the documented ones."""
    from conftest import read_metrics

    from accelerl.callbacks import Callback

    heard, hooks = [], []

    class Evals(Callback):
        def on_evaluation(self, event):
            hooks.append((event.env_step, trainer.stage, round(trainer.wall_time, 2), dict(event.metrics)))

    cfg = tiny_config(tmp_path, num_envs=1, total_steps=600, stage1_steps="auto", switch_max_steps=500,
                      eval_every=200, bc_every=100)
    trainer = Trainer(cfg, tmp_path, callbacks=[Evals()])

    def observe(step, acc, tr, bc):
        heard.append((step, acc, tr, bc))
        return step == 400, "the recorded rule"

    trainer.switch_rule.observe = observe
    summary = trainer.run()
    rows = [r for r in read_metrics(tmp_path) if r["return_mean"] and r["policy"] != "random"]
    assert summary["switch_reason"] == "the recorded rule" and summary["switch_step"] == 400
    assert [h[0] for h in heard] == [200, 400]
    for step, acc, tr, bc in heard:
        (hook,) = [m for s, _, _, m in hooks if s == step]
        assert (acc, tr, bc) == (hook["returns"]["accelerator"], hook["returns"]["transformer"], hook["bc_loss"])
        assert bc > 0
    assert [(s, stage) for s, stage, _, _ in hooks] == [(0, "stage1"), (200, "stage1"), (400, "stage1"), (600, "stage2")]
    for step, _, wall, metrics in hooks:
        assert {"returns", "initial", "random_return", "train_return", "steps_per_s", "wall_time"} <= metrics.keys()
        assert metrics["initial"] == (step == 0) and metrics["wall_time"] == wall and (wall > 0) == (step > 0)
        assert isinstance(metrics["steps_per_s"], float) and metrics["steps_per_s"] == round(metrics["steps_per_s"], 1)
        for row in (r for r in rows if int(r["env_step"]) == step):
            assert float(row["return_mean"]) == pytest.approx(metrics["returns"][row["policy"]])
            assert row["wall_time"] == str(wall) and row["steps_per_s"] == str(metrics["steps_per_s"])
            assert row["train_return"] == ("" if metrics["train_return"] is None else str(metrics["train_return"]))
            for loss in set(metrics) - {"returns", "initial", "random_return", "train_return", "steps_per_s",
                                        "wall_time"}:
                assert float(row[loss]) == pytest.approx(metrics[loss]), loss
    assert {r["env_step"] for r in rows} == {"0", "200", "400", "600"}
    out = capsys.readouterr().out  # the console's progress line names the stage
    assert " step 400 stage=stage1 " in out and " step 600 stage=stage2 " in out


@pytest.mark.parametrize(("min_steps", "starts"), [(300, 100), (100, 300)])
def test_the_builtin_switch_rule_gets_the_runs_thresholds_and_waits_for_learning_and_min_steps(tmp_path, min_steps,
                                                                                                starts):
    """--switch-ratio, -patience, -plateau and the stage-1 cap reach the rule, which never switches
    before the later of --switch-min-steps and --learning-starts (a switch before any learning
    would hand stage 2 an untrained transformer)."""
    cfg = tiny_config(tmp_path, stage1_steps="auto", switch_ratio=0.7, switch_patience=3, switch_plateau=0.2,
                      switch_max_steps=800, switch_min_steps=min_steps, learning_starts=starts)
    trainer = Trainer(cfg, tmp_path)
    close_envs(trainer)
    rule = trainer.switch_rule
    assert (rule.ratio, rule.patience, rule.plateau, rule.cap, rule.min_steps) == (0.7, 3, 0.2, 800, 300)
