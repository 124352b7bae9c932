"""Bad input ends as exit code 2 and one line 'accelerl: error: ...' on stderr, never a traceback.

The checks run the command line in this process (``cli_here``: a fresh interpreter per case would
cost more than the case); ``test_a_fresh_interpreter_prints_the_same_single_line`` runs both kinds
of error, a config error and a usage error, through ``python -m accelerl.cli`` too."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_one_error_line, cli_here, run_cli

from accelerl import checkpoint, cli
from accelerl.algos.base import OffPolicy
from accelerl.stages import Trainer

SMALL_RUN = ["--env", "Pendulum-v1", "--total-steps", "300", "--learning-starts", "100", "--stage1-steps", "200",
             "--eval-every", "150", "--eval-episodes", "1", "--checkpoint-every", "150", "--bc-every", "100",
             "--bc-updates", "2", *TINY]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    rc, _, err = cli_here(["train", *SMALL_RUN, "--run-dir", run_dir])
    assert rc == 0, err
    return run_dir


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--env", "NoSuchEnv-v0"], "NoSuchEnv"),
        (["train", "--env", "CartPole-v1"], "Box"),
        (["train", "--env", "Pendulum-v1", "--obs-mask", "0,7"], "out of range"),
        (["train", "--env", "Hopper-v5", "--obs-mask", "11"], "out of range"),
        (["train", "--env", "Pendulum-v1", "--context", "0"], "--context"),
        (["train", "--env", "Pendulum-v1", "--buffer-size", "10", "--batch-size", "32"], "--buffer-size"),
        (["train", "--env", "Pendulum-v1", "--bogus-flag", "1"], "unrecognized"),
        (["train", "--mode", "fast"], "invalid choice"),
        (["train", "--env", "Pendulum-v1", "--stage1-steps", "soon"], "--stage1-steps"),
        (["train", "--env", "Pendulum-v1", "--d-model", "30", "--n-heads", "4"], "--n-heads"),
        (["train", "--env", "Pendulum-v1", "--pixels"], "MuJoCo"),
        (["train", "--env", "Hopper-v5", "--pixels", "--obs-mask", "velocities"], "state+rgb"),
        (["train", "--env", "Hopper-v5", "--accelerator", "cnn"], "--pixels"),
        (["train", "--env", "Hopper-v5", "--pixels", "--image-size", "16"], "--image-size"),
        (["train", "--env", "Hopper-v5", "--pixels", "--buffer-size", "100000000"], "GiB"),
        (["train", "--env", "Pendulum-v1", "--critic", "transformer", "--mode", "accelerator"], "--critic"),
        (["train", "--env", "Pendulum-v1", "--transformer-cnn", "accelerator"], "image observations"),
        (["train", "--env", "Hopper-v5", "--pixels", "--mode", "scratch", "--transformer-cnn", "accelerator"],
         "--mode accelerate"),
        (["train", "--env", "Pendulum-v1", "--seed", "-1"], "--seed"),
        (["train", "--env", "Pendulum-v1", "--obs-mask", "2,0,1"], "increasing"),
        (["eval", "no/such/run"], "no/such/run"),
        (["plot", "no/such/run"], "no/such/run"),
    ],
)
def test_bad_input_is_one_error_line(args, needle, tmp_path):
    if args[0] == "train":
        args = [*args, "--run-dir", tmp_path / "run"]
    rc, _, err = cli_here(args, cwd=tmp_path)
    assert_one_error_line(rc, err, needle)


@pytest.mark.parametrize("args,needle", [(["--env", "NoSuchEnv-v0"], "NoSuchEnv"), (["--bogus-flag", "1"], "unrecognized")])
def test_a_fresh_interpreter_prints_the_same_single_line(args, needle, tmp_path):
    rc, _, err = run_cli(["train", *args, "--run-dir", tmp_path / "run"], cwd=tmp_path)
    assert_one_error_line(rc, err, needle)
    assert (rc, err) == cli_here(["train", *args, "--run-dir", tmp_path / "run"], cwd=tmp_path)[::2]


def test_env_id_with_unknown_module_is_one_error_line(tmp_path):
    rc, _, err = cli_here(["train", "--env", "no_such_module:Thing-v0", "--run-dir", tmp_path / "run"], cwd=tmp_path)
    assert_one_error_line(rc, err, "no_such_module")


def test_run_dir_that_is_a_file_is_one_error_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    rc, _, err = cli_here(["train", "--env", "Pendulum-v1", "--run-dir", tmp_path / "afile"], cwd=tmp_path)
    assert_one_error_line(rc, err, "afile")


@pytest.mark.parametrize("bad", [["--env", "NoSuchEnv-v0"], ["--env", "Pendulum-v1", "--obs-mask", "5"]])
def test_rejected_config_leaves_no_run_directory(bad, tmp_path):
    rc, _, err = cli_here(["train", *bad, "--run-dir", tmp_path / "run"], cwd=tmp_path)
    assert rc == 2, err
    assert not (tmp_path / "run").exists()
    assert list(tmp_path.iterdir()) == []  # nor a default runs/ folder


def test_help_lists_every_documented_train_flag():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("### `accelerl train` flags"):readme.index("### Partial observability")]
    flags = set(re.findall(r"`(--[a-z0-9-]+)", table))
    assert len(flags) > 40
    rc, out, err = cli_here(["train", "--help"])
    assert rc == 0, err
    assert sorted(f for f in flags if f not in out) == []


def test_resume_of_a_missing_directory(tmp_path):
    rc, _, err = cli_here(["train", "--resume", tmp_path / "nothing"], cwd=tmp_path)
    assert_one_error_line(rc, err, "resume")


def test_resume_with_a_flag_other_than_total_steps(finished_run, tmp_path):
    rc, _, err = cli_here(["train", "--resume", finished_run, "--seed", "3"], cwd=tmp_path)
    assert_one_error_line(rc, err, "--seed")


def test_resume_of_a_truncated_checkpoint(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    latest = run / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    rc, _, err = cli_here(["train", "--resume", run, "--total-steps", "400"], cwd=tmp_path)
    assert_one_error_line(rc, err, "checkpoint")


def _resume_with_edited_context(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["context"] in (None, 3)
    cfg["context"] = 5
    (run / "config.json").write_text(json.dumps(cfg))
    return cli_here(["train", "--resume", run, "--total-steps", "400"], cwd=tmp_path)


def test_resume_with_a_different_config_is_refused(finished_run, tmp_path):
    rc, _, err = _resume_with_edited_context(finished_run, tmp_path)
    assert "Traceback" not in err, err
    assert rc == 2, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("accelerl: error:") and "context" in last, err


def test_resume_with_a_different_config_is_one_error_line(finished_run, tmp_path):
    rc, _, err = _resume_with_edited_context(finished_run, tmp_path)
    assert_one_error_line(rc, err, "context")


def test_context_longer_than_the_buffer_is_rejected(tmp_path):
    rc, _, err = cli_here(["train", "--env", "Pendulum-v1", "--total-steps", "300", "--learning-starts", "50",
                          "--eval-every", "150", "--eval-episodes", "1", "--checkpoint-every", "150", "--bc-every", "50",
                          "--bc-updates", "2", *TINY, "--context", "50", "--buffer-size", "40", "--stage2-buffer-size",
                          "40", "--run-dir", tmp_path / "run"], cwd=tmp_path)
    assert_one_error_line(rc, err, "context")


def test_a_buffer_too_small_for_the_cnn_frame_stack_is_rejected():
    """CNN runs gather max(--context, --frame-stack) rows per window: a buffer that fits the
    context but not the frame stack must be refused up front, not fail mid-run."""
    from accelerl.config import build_config
    from accelerl.errors import ConfigError

    small = {"env": "Hopper-v5", "pixels": "rgb", "accelerator": "cnn", "context": 2, "batch_size": 8,
             "bc_batch_size": 8, "buffer_size": 16, "stage2_buffer_size": 16}
    build_config({**small, "frame_stack": 2})  # 16 rows fit windows of 2
    with pytest.raises(ConfigError, match="--frame-stack 8; use at least 18"):
        build_config({**small, "frame_stack": 8})


def test_bc_before_any_complete_transition_does_not_crash(tmp_path):
    rc, _, err = cli_here(["train", "--env", "Pendulum-v1", "--total-steps", "40", "--learning-starts", "0",
                          "--bc-every", "1", "--bc-updates", "1", "--eval-every", "40", "--eval-episodes", "1",
                          "--checkpoint-every", "40", *TINY, "--run-dir", tmp_path / "run"], cwd=tmp_path)
    assert rc == 0, err[-2000:]


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    saves = {"n": 0}
    original_save, original_step = Trainer.save, OffPolicy._critic_loss

    def save(self):
        original_save(self)
        saves["n"] += 1

    def critic_loss(self, params, batch, target):
        if saves["n"] >= 2:  # diverge right after the first scheduled checkpoint (the one before is step 0's)
            target = target * float("nan")
        return original_step(self, params, batch, target)

    monkeypatch.setattr(Trainer, "save", save)
    monkeypatch.setattr(OffPolicy, "_critic_loss", critic_loss)
    run = tmp_path / "run"
    rc = cli.main(["train", "--env", "Pendulum-v1", "--total-steps", "600", "--learning-starts", "100",
                   "--stage1-steps", "400", "--eval-every", "100", "--eval-episodes", "1", "--checkpoint-every", "200",
                   "--bc-every", "100", "--bc-updates", "2", *TINY, "--run-dir", str(run)])
    err = capsys.readouterr().err
    assert rc == 2
    assert saves["n"] == 2
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("accelerl: error:") and "critic_loss" in last and "nan" in last.lower(), err
    state = checkpoint.load(run / "checkpoints" / "latest.pt")
    assert state["env_step"] == 200
    tensors = [t for part in (state["nets"], state["rl"]) for t in _tensors(part)]
    assert len(tensors) > 10
    assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


@pytest.mark.parametrize("what", ["config", "checkpoint"])
def test_resume_of_a_run_from_another_version_is_one_error_line(what, finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if what == "config":
        cfg = json.loads((run / "config.json").read_text())
        cfg["version"] = 99
        (run / "config.json").write_text(json.dumps(cfg))
    else:
        import torch

        state = torch.load(run / "checkpoints" / "latest.pt", weights_only=False)
        state["format_version"] = 99
        torch.save(state, run / "checkpoints" / "latest.pt")
    rc, _, err = cli_here(["train", "--resume", run, "--total-steps", "400"], cwd=tmp_path)
    assert_one_error_line(rc, err, "version" if what == "config" else "format")


def test_eval_and_resume_of_a_run_with_a_corrupt_config(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "config.json").write_text('{"env": "Pendulum-v1", ')
    for args in (["eval", run], ["train", "--resume", run]):
        rc, _, err = cli_here(args, cwd=tmp_path)
        assert_one_error_line(rc, err, "config.json")


def test_plot_output_and_empty_runs(finished_run, tmp_path):
    rc, _, err = cli_here(["plot", finished_run, "--out", tmp_path / "new" / "dir" / "c.png"], cwd=tmp_path)
    assert rc == 0 and (tmp_path / "new" / "dir" / "c.png").is_file(), err
    rc, _, err = cli_here(["plot", finished_run, "--out", tmp_path / "c.xyz"], cwd=tmp_path)
    assert_one_error_line(rc, err, "--out")
    empty = tmp_path / "empty"
    empty.mkdir()
    lines = (finished_run / "metrics.csv").read_text().splitlines()
    random_row = next(line for line in lines if ",random," in line)  # killed during its first evaluation
    (empty / "metrics.csv").write_text(lines[0] + "\n" + random_row + "\n")
    rc, _, err = cli_here(["plot", empty, "--out", tmp_path / "e.png"], cwd=tmp_path)
    assert_one_error_line(rc, err, "no evaluation")
