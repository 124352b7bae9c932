"""Resume after kill -9 reproduces the uninterrupted run exactly (CPU), in stage 1 and stage 2."""

from __future__ import annotations

import shutil
import signal
import time

import pytest
import torch
from conftest import TINY, comparable, popen_cli, read_metrics, read_summary, train_ok

from accelerl import checkpoint

HOPPER = ["--env", "Hopper-v5", "--total-steps", "900", "--learning-starts", "200", "--stage1-steps", "600",
          "--eval-every", "200", "--eval-episodes", "2", "--checkpoint-every", "300", "--bc-every", "100",
          "--bc-updates", "5", *TINY]
# two envs, SAC (alpha and its optimiser must resume too), killed after the switch
PENDULUM_SAC = ["--env", "Pendulum-v1", "--algo", "sac", "--num-envs", "2", "--total-steps", "900",
                "--learning-starts", "200", "--stage1-steps", "300", "--eval-every", "300", "--eval-episodes", "2",
                "--checkpoint-every", "300", "--bc-every", "100", "--bc-updates", "5", *TINY]


def _flag(args: list[str], name: str) -> int:
    return int(args[args.index(name) + 1])


def _with_total(args: list[str], total: int) -> list[str]:
    args = list(args)
    args[args.index("--total-steps") + 1] = str(total)
    return args


def _latest(run_dir, seen: dict | None = None) -> dict | None:
    """The latest checkpoint, or None. With ``seen`` (the poll's memory), None also when the file
    is the one loaded last time: loading takes tens of ms, and polling every 50 ms would otherwise
    take a good part of a core from the run being watched."""
    path = run_dir / "checkpoints" / "latest.pt"
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if seen is not None and seen.get("signature") == signature:
        return None
    try:
        state = checkpoint.load(path)
    except Exception:  # replaced between stat() and load(): try again
        return None
    if seen is not None:
        seen["signature"] = signature
    return state


def kill_when(args: list[str], run_dir, ready, timeout: float = 240) -> tuple[dict, list[str]]:
    """Start ``accelerl train ARGS``, SIGKILL it as soon as its latest checkpoint satisfies
    ``ready``; returns (the last checkpoint written before the kill, extra resume flags). If
    the run finished before it could be killed, start again with a budget it cannot finish in
    time (only --total-steps may change on resume) and resume with the original budget."""
    total = _flag(args, "--total-steps")
    for budget in (total, 100 * total):
        shutil.rmtree(run_dir, ignore_errors=True)
        proc = popen_cli(["train", *_with_total(args, budget), "--run-dir", run_dir])
        deadline = time.monotonic() + timeout
        killed, seen = False, {}
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                state = _latest(run_dir, seen)
                if state is not None and ready(state):
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None and not killed:
                proc.kill()
            _, err = proc.communicate()
        if killed and proc.returncode == -signal.SIGKILL:
            state = _latest(run_dir)
            if state["env_step"] < total:
                return state, ([] if budget == total else ["--total-steps", str(total)])
        assert proc.returncode in (0, -signal.SIGKILL), err[-3000:]
    raise AssertionError("could not kill the run while it was still running")


def assert_same_run(resumed, reference) -> None:
    assert comparable(read_metrics(resumed)) == comparable(read_metrics(reference))
    a, b = read_summary(resumed), read_summary(reference)
    assert a["final_return"] == b["final_return"]
    assert a["env_steps"] == b["env_steps"] and a["switch_step"] == b["switch_step"]
    na = checkpoint.load(resumed / "checkpoints" / "latest.pt")["nets"]
    nb = checkpoint.load(reference / "checkpoints" / "latest.pt")["nets"]
    assert na.keys() == nb.keys()
    for net in na:
        for key, value in na[net].items():
            assert torch.equal(value, nb[net][key]), f"{net}.{key} differs"


def test_resume_after_kill_in_stage1_hopper(tmp_path):
    reference = tmp_path / "uninterrupted"
    train_ok([*HOPPER, "--run-dir", reference])
    run = tmp_path / "killed"
    state, extra = kill_when(HOPPER, run, lambda s: s["env_step"] >= 300)
    assert state["stage"] == "stage1" and state["env_step"] < 600
    rows_at_kill = read_metrics(run)
    stale = run / "checkpoints" / ".latest.pt.x1y2.tmp"  # as a kill in the middle of a write leaves
    stale.write_bytes(b"half a checkpoint")
    train_ok(["--resume", run, *extra])
    assert_same_run(run, reference)
    assert len(read_metrics(run)) > len(rows_at_kill)
    assert not stale.exists()
    assert tensorboard_eval_steps(run) == tensorboard_eval_steps(reference)  # nothing lost or doubled


def tensorboard_eval_steps(run_dir) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [e.step for e in events.Scalars("eval/transformer_return")]


def test_resume_after_a_kill_before_the_first_scheduled_checkpoint(tmp_path, pendulum_reference):
    """A checkpoint is written at step 0, so a run killed before its first scheduled one is not
    stuck (there was no latest.pt to resume, and its folder refused a fresh start)."""
    args = list(PENDULUM_SAC)
    args[args.index("--checkpoint-every") + 1] = "100000"
    run = tmp_path / "killed"
    state, extra = kill_when(args, run, lambda s: s["env_step"] == 0)
    assert state["env_step"] == 0
    train_ok(["--resume", run, *extra])
    assert_same_run(run, pendulum_reference)
    # TensorBoard keeps the events of the checkpoint's own step (the initial evaluation here)
    assert tensorboard_eval_steps(run) == tensorboard_eval_steps(pendulum_reference)


@pytest.fixture(scope="module")
def pendulum_reference(tmp_path_factory):
    reference = tmp_path_factory.mktemp("resume") / "uninterrupted"
    train_ok([*PENDULUM_SAC, "--run-dir", reference])
    return reference


def test_resume_after_kill_in_stage2_sac_two_envs(tmp_path, pendulum_reference):
    reference = pendulum_reference
    run = tmp_path / "killed"
    state, extra = kill_when(PENDULUM_SAC, run, lambda s: s["stage"] == "stage2" and s["env_step"] >= 600)
    assert state["switch_step"] == 300 and 600 <= state["env_step"] < 900
    train_ok(["--resume", run, *extra])
    assert_same_run(run, reference)


def test_resume_of_a_finished_run_with_a_larger_budget(tmp_path, pendulum_reference):
    """--total-steps is the one training setting a resume may change: finishing at 600 and
    resuming to 900 equals running 900 straight (the checkpoint at 600 is in stage 2)."""
    short = tmp_path / "short"
    train_ok([*_with_total(PENDULUM_SAC, 600), "--run-dir", short])
    assert checkpoint.load(short / "checkpoints" / "latest.pt")["stage"] == "stage2"
    train_ok(["--resume", short, "--total-steps", "900"])
    assert_same_run(short, pendulum_reference)


def test_async_envs_resume_after_kill_as_a_straight_sync_run(tmp_path):
    """--vector-env async: 2 Hopper envs in worker processes (episodes ending at different steps),
    killed mid-run and resumed, give exactly the uninterrupted run, which is also the sync run."""
    args = [*HOPPER, "--num-envs", "2"]
    reference = tmp_path / "sync"
    train_ok([*args, "--run-dir", reference])
    run = tmp_path / "killed"
    state, extra = kill_when([*args, "--vector-env", "async"], run, lambda s: s["env_step"] >= 300)
    assert state["config"]["vector_env"] == "async" and state["env_step"] < 900
    train_ok(["--resume", run, *extra])
    assert_same_run(run, reference)
