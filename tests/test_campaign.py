"""The evidence campaign (benchmarks/campaign.py): plans expand to valid runs, grow by seeds
without redoing runs, and report the statistics of known inputs; one toy plan really trains."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import TINY
from test_benchmarks import load

from accelerl import sweep
from accelerl.cli import train_overrides_parser
from accelerl.config import build_config

pytest.importorskip("rliable", reason="the campaign's statistics need the bench extra (rliable)")
campaign = load("campaign")
TINY_FLAGS = tuple(a for a in TINY if a not in ("--device", "cpu"))


def test_every_plan_expands_to_valid_distinct_runs(tmp_path):
    parse = train_overrides_parser()
    for name, plan in campaign.PLANS.items():
        runs = campaign.expand(plan, tmp_path)
        assert len({r.run_dir for r in runs}) == len(runs), name
        for run in runs:
            cfg = build_config(parse(run.flags))  # every flag a valid train config
            assert (cfg.env, cfg.algo, cfg.total_steps, cfg.seed) == (run.study.env, run.study.algo,
                                                                       run.study.total_steps, run.seed)
            assert cfg.mode == run.variant.mode
        assert {s.question for s in plan.studies} >= {1, 2}, name


def test_the_cpu_plan_is_what_the_issue_of_evidence_asks_for(tmp_path):
    runs = campaign.expand(campaign.PLANS["cpu"], tmp_path)
    q1 = [r for r in runs if r.study.question == 1]
    assert {(r.study.env, r.study.algo) for r in q1} == {("Hopper-v5", "td3")}
    assert sorted({r.variant.mode for r in q1}) == ["accelerate", "accelerator", "scratch"]
    assert all(len([r for r in q1 if r.variant == v]) == 5 for v in {r.variant for r in q1})
    (q2,) = [s for s in campaign.PLANS["cpu"].studies if s.question == 2]
    evicting = {v.label: v.evicts(q2.total_steps) for v in q2.variants}
    assert evicting == {"buffer 5,000": True, "buffer 10,000": True, "buffer 20,000": True,
                        "buffer 1,000,000": False}  # the small buffers evict; one keeps everything
    assert q2.seeds == 5


def test_more_seeds_grow_each_grid_and_keep_its_runs(tmp_path):
    plan = campaign.PLANS["cpu"]
    five, seven = campaign.expand(plan, tmp_path), campaign.expand(plan, tmp_path, seeds=7)
    assert {r.run_dir for r in five} < {r.run_dir for r in seven}
    assert len(seven) == len(five) // 5 * 7
    only = campaign.expand(plan, tmp_path, keys=[plan.studies[0].key])
    assert {r.study for r in only} == {plan.studies[0]}


# ----------------------------------------------------------------------------- known inputs
def _toy_plan() -> campaign.Plan:
    rates = {"accelerate": 100.0, "scratch": 100.0, "accelerator": 100.0}
    base = {"eval_every": 500, "eval_episodes": 1, "learning_starts": 100, "seeds": 5, "extra": TINY_FLAGS}
    return campaign.Plan("toy", "a test", 1, (
        campaign.Study(1, "Pendulum-v1", "td3", 1000, campaign.modes(rates, ("--stage1-steps", "500")), **base),
        campaign.Study(2, "Pendulum-v1", "td3", 1000, campaign.buffers([200], 2000, 500, 100.0), **base),
        campaign.Study(4, "Pendulum-v1", "td3", 1000, campaign.modes(rates, ("--stage1-steps", "500")),
                       obs_mask="velocities", **base),
    ))


def _known_run(started: list):
    """A stand-in for one `accelerl train`: metrics.csv with returns set by mode and seed.
    accelerator 0 -> 50+s -> 100+s^2; accelerated transformer 105+s at 500 (the switch; the
    accelerator then at 60+s) -> 110+s; from scratch 20 -> 90+s."""
    parse = train_overrides_parser()

    def run_point(flags, run_dir, threads, total_steps, device="auto"):
        cfg = build_config(parse(flags))
        started.append((cfg.mode, cfg.seed, cfg.stage2_buffer_size))
        s, rows = cfg.seed, []
        if cfg.mode == "accelerator":
            rows = [(0, "accelerator", "accelerator", 0), (500, "accelerator", "accelerator", 50 + s),
                    (1000, "accelerator", "accelerator", 100 + s * s)]
        elif cfg.mode == "scratch":
            rows = [(0, "scratch", "transformer", 0), (500, "scratch", "transformer", 20),
                    (1000, "scratch", "transformer", 90 + s)]
        else:
            small = cfg.stage2_buffer_size == 200
            rows = [(0, "stage1", "accelerator", 0), (0, "stage1", "transformer", 0),
                    (500, "stage1", "accelerator", 60 + s), (500, "stage1", "transformer", 105 + s),
                    (750, "stage2", "transformer", 107 + s), (1000, "stage2", "transformer", 110 + s - 20 * small)]
        path = Path(run_dir)
        path.mkdir(parents=True)
        with (path / "metrics.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["env_step", "stage", "policy", "return_mean", "wall_time"])
            writer.writerows([(step, stage, policy, value, step / 10) for step, stage, policy, value in rows])
        (path / "summary.json").write_text(json.dumps({
            "env_steps": total_steps, "wall_time_s": total_steps / 10,
            "switch_step": 500 if cfg.mode == "accelerate" else None}))
        return "ran"

    return run_point


def test_a_plan_runs_grows_by_seeds_and_reports_known_statistics(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(campaign.PLANS, "toy", _toy_plan())
    started: list = []
    monkeypatch.setattr(sweep, "run_point", _known_run(started))
    docs = tmp_path / "RESULTS.md"
    args = ["--plan", "toy", "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path), "--write-docs",
            "--docs-file", str(docs), "--reps", "200"]

    assert campaign.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "plan toy (a test): 40 runs, 0 finished" in out and "estimated time left" in out and not started

    assert campaign.main(args) == 0
    assert len(started) == 40
    out = capsys.readouterr().out
    q1 = out.split("## q1-Pendulum-v1-td3-1k")[1].split("## ")[0]
    # finals: accelerate 110..114, scratch 90..94, accelerator 100, 101, 104, 109, 116 (median 104,
    # IQM (0.75 * 101 + 104 + 0.75 * 109) / 2.5 = 104.6; 116 beats every accelerated run: P = 20/25)
    assert "P(accelerated > from scratch) = 1.00 [1.00, 1.00] on final return" in q1
    assert "P(accelerated transformer > accelerator alone) = 0.80 [" in q1
    assert "| accelerate | 5 | 112 [" in q1 and "| 5/5 | 500 | 50 |" in q1  # above 104 at its first eval
    assert "| accelerator | 5 | 105 [" in q1 and "| 3/5 | 1,000 | 100 |" in q1  # 104 itself counts as reached
    assert "| scratch | 5 | 92 [" in q1 and "| 0/5 | not reached | not reached |" in q1
    assert "Threshold: the accelerator's median final return at this budget (104)" in q1
    q2 = out.split("## q2-Pendulum-v1-td3-1k")[1].split("## ")[0]
    assert "P(final > buffer 2,000) = 0.00 [0.00, 0.00]" in q2  # the 200 buffer ends 20 lower on every seed
    assert "| buffer 200 | 5 | 92 [" in q2 and "| yes |" in q2 and "| no |" in q2
    q4 = out.split("## q4-Pendulum-v1-velocities-td3-1k")[1]
    assert "minus the LSTM accelerator's at the switch: IQM 50 [50, 50]" in q4  # (110+s) - (60+s)
    text = docs.read_text()
    assert text.count(":start -->") == 3
    assert "15 of 15 runs of the study finished" in text
    assert (tmp_path / "campaign-q1-Pendulum-v1-td3-1k.png").stat().st_size > 0
    assert (tmp_path / "campaign-q1-Pendulum-v1-td3-1k-profile.png").stat().st_size > 0
    per_run = list(csv.DictReader((tmp_path / "campaign-q1-Pendulum-v1-td3-1k.csv").open()))
    assert len(per_run) == 15 and {r["steps_to_threshold"] for r in per_run if r["variant"] == "accelerate"} == {"500"}

    started.clear()
    assert campaign.main([*args, "--seeds", "6"]) == 0  # a sixth seed: only its runs start
    assert len(started) == 8 and {seed for _, seed, _ in started} == {5}  # 8 variants in the plan
    started.clear()
    assert campaign.main([*args, "--seeds", "6", "--report-only"]) == 0 and not started
    assert "18 of 18 runs of the study finished" in docs.read_text()


def test_the_estimate_uses_a_variants_measured_speed_once_it_has_one(tmp_path):
    plan = _toy_plan()
    runs = campaign.expand(plan, tmp_path)
    assert campaign.estimate_seconds(runs, jobs=1) == pytest.approx(40 * 1000 / 100.0 * campaign.EVAL_OVERHEAD)
    first = runs[0]  # question 1, accelerate, seed 0: measured at 0.5 s per env step
    first.run_dir.mkdir(parents=True)
    (first.run_dir / "summary.json").write_text(json.dumps({"env_steps": 1000, "wall_time_s": 500.0}))
    same = [r for r in runs[1:] if r.study == first.study and r.variant == first.variant]
    assert len(same) == 4
    expected = (4 * 1000 * 0.5 + 35 * 1000 / 100.0) * campaign.EVAL_OVERHEAD
    assert campaign.estimate_seconds(runs, jobs=1) == pytest.approx(expected)
    assert campaign.estimate_seconds(runs, jobs=2) == pytest.approx(expected / 2)


def test_a_run_of_another_budget_in_the_folder_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(campaign.PLANS, "toy", _toy_plan())
    run = campaign.expand(campaign.PLANS["toy"], tmp_path)[0]
    run.run_dir.mkdir(parents=True)
    other = build_config({**train_overrides_parser()(run.flags), "total_steps": 1000, "batch_size": 64})
    (run.run_dir / "config.json").write_text(json.dumps(other.to_dict()))
    assert campaign.main(["--plan", "toy", "--out", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("campaign.py: ") and "differs in: batch_size" in err and "\n" not in err


def test_a_toy_plan_trains_for_real(tmp_path, monkeypatch, capsys):
    """The report reads what real runs write (in process, to keep it quick)."""
    from accelerl.api import train

    parse = train_overrides_parser()

    def in_process(flags, run_dir, threads, total_steps, device="auto"):
        train(run_dir=run_dir, **parse(flags))
        return "ran"

    rates = {"accelerate": 1.0, "scratch": 1.0, "accelerator": 1.0}
    study = campaign.Study(1, "Pendulum-v1", "td3", 400, campaign.modes(rates, ("--stage1-steps", "200", "--bc-every",
                           "50", "--bc-updates", "2")), seeds=2, eval_every=200, eval_episodes=1, learning_starts=100,
                           extra=TINY_FLAGS)
    monkeypatch.setitem(campaign.PLANS, "toy", campaign.Plan("toy", "a test", 1, (study,)))
    monkeypatch.setattr(sweep, "run_point", in_process)
    assert campaign.main(["--plan", "toy", "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path),
                          "--reps", "200"]) == 0
    out = capsys.readouterr().out
    assert "6 of 6 runs of the study finished" in out and "P(accelerated > from scratch) = " in out
    assert "(indicative: fewer than 5)" in out
    per_run = list(csv.DictReader((tmp_path / f"campaign-{study.key}.csv").open()))
    assert {r["switch_step"] for r in per_run if r["variant"] == "accelerate"} == {"200"}
    assert all(float(r["wall_time_s"]) > 0 for r in per_run)
