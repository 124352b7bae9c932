"""`accelerl sweep`: grid expansion, up-front validation, parallel runs, skip and resume, results."""

from __future__ import annotations

import csv
import sys

import pytest
from conftest import TINY, assert_one_error_line, cli_here, run_cli

from accelerl.errors import ConfigError
from accelerl.sweep import expand_grid, point_flags, point_name, require_ray

TRAIN = ["--env", "Pendulum-v1", "--total-steps", "300", "--learning-starts", "100", "--stage1-steps", "200",
         "--eval-every", "150", "--eval-episodes", "1", "--bc-every", "100", "--bc-updates", "2", *TINY]


def test_grid_expands_to_the_cartesian_product_in_order():
    points = expand_grid([["env", "A-v0", "B-v0"], ["obs-mask", "none", "0,1"], ["--seed", "0", "1", "2"]])
    assert len(points) == 12
    assert points[0] == {"env": "A-v0", "obs_mask": "none", "seed": "0"}
    assert points[1] == {"env": "A-v0", "obs_mask": "none", "seed": "1"}
    assert points[-1] == {"env": "B-v0", "obs_mask": "0,1", "seed": "2"}
    assert point_name(points[-1]) == "env=B-v0__obs_mask=0,1__seed=2"
    assert point_flags(points[0], ["--total-steps", "9"]) == ["--total-steps", "9", "--env", "A-v0", "--seed", "0"]
    assert expand_grid([]) == [{}]


def test_on_off_flags_take_true_or_false():
    points = expand_grid([["stage2-warmstart", "true", "false", "none"]])
    assert [point_flags(p, []) for p in points] == [["--stage2-warmstart"], ["--no-stage2-warmstart"], []]
    with pytest.raises(ConfigError, match="true or false"):
        point_flags({"stage2_warmstart": "maybe"}, [])


@pytest.mark.parametrize("grid,needle", [([["nope", "1"]], "not a flag"), ([["seed"]], "at least one value"),
                                         ([["seed", "0"], ["seed", "1"]], "twice"), ([["run-dir", "x"]], "not a flag"),
                                         ([["seed", "0", "1", "0"]], "repeats the value 0")])
def test_bad_grids_are_refused(grid, needle):
    with pytest.raises(ConfigError, match=needle):
        expand_grid(grid)


def results(out) -> list[dict]:
    with (out / "results.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_sweep_runs_in_parallel_skips_finished_runs_and_resumes_interrupted_ones(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--grid", "mode", "accelerate", "scratch", "--jobs", "2", "--out", out, "--", *TRAIN]
    rc, stdout, err = run_cli(args)
    assert rc == 0, err
    assert stdout.strip() == str(out / "results.csv")
    rows = results(out)
    assert [(r["mode"], r["status"], r["env_steps"]) for r in rows] == [("accelerate", "ran", "300"),
                                                                         ("scratch", "ran", "300")]
    assert rows[0]["switch_step"] == "200" and rows[1]["switch_step"] == ""
    finished = out / "mode=scratch" / "summary.json"
    mtime = finished.stat().st_mtime
    (out / "mode=accelerate" / "summary.json").unlink()  # as if killed after its last checkpoint
    rc, _, err = run_cli(args)
    assert rc == 0, err
    rows = results(out)
    assert [r["status"] for r in rows] == ["resumed", "done earlier"]
    assert finished.stat().st_mtime == mtime and rows[0]["env_steps"] == "300"
    # a longer budget extends the finished runs; another setting is refused before anything runs
    rc, _, err = run_cli([*args, "--total-steps", "450"])
    assert rc == 0, err
    assert [(r["status"], r["env_steps"]) for r in results(out)] == [("extended", "450"), ("extended", "450")]
    rc, _, err = cli_here([*args, "--gamma", "0.9"])
    assert_one_error_line(rc, err, "differs in: gamma")


@pytest.mark.parametrize("extra,needle", [
    (["--grid", "context", "3", "0"], "grid point context=0"),
    (["--grid", "mode", "fast"], "invalid choice"),
    (["--", "--run-dir", "x"], "--run-dir"),
    (["--", "--resume=x"], "--resume"),
])
def test_bad_sweeps_are_one_error_line_before_anything_runs(extra, needle, tmp_path):
    args = ["sweep", "--out", tmp_path / "sweep", *extra]
    if "--" not in extra:
        args += ["--", *TRAIN]
    rc, _, err = cli_here(args)
    assert_one_error_line(rc, err, needle)
    assert not list(tmp_path.glob("sweep/*/checkpoints"))  # nothing ran


def test_sweep_on_a_local_ray_cluster(tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'accelerl[ray]')")
    out = tmp_path / "sweep"
    rc, _, err = run_cli(["sweep", "--ray", "local", "--grid", "seed", "0", "1", "--out", out, "--", *TRAIN])
    assert rc == 0, err
    assert [(r["seed"], r["status"], r["env_steps"]) for r in results(out)] == [("0", "ran", "300"), ("1", "ran", "300")]


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'accelerl\[ray\]'"):
        require_ray()


def test_a_sweep_over_a_users_env_entry_point(tmp_path):
    """`--env module:EnvClass` reaches every run's subprocess (started in the user's folder)."""
    from pathlib import Path

    out = tmp_path / "sweep"
    train = [a if a != "Pendulum-v1" else "custom_envs:PointEnv" for a in TRAIN]
    rc, _, err = run_cli(["sweep", "--grid", "seed", "0", "1", "--jobs", "2", "--out", out, "--", *train],
                         cwd=Path(__file__).resolve().parent)
    assert rc == 0, err
    assert [(r["seed"], r["status"], r["env_steps"]) for r in results(out)] == [("0", "ran", "300"), ("1", "ran", "300")]
