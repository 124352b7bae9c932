"""accelerl.train / accelerl.resume and callbacks: what a researcher scripting runs relies on."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    PENDULUM_SHORT,
    assert_one_error_line,
    cli_here,
    comparable,
    read_metrics,
    read_summary,
    run_cli,
    tiny_config,
)

import accelerl
from accelerl import checkpoint
from accelerl.callbacks import Callback, Callbacks, StopOnReturn, SwitchWhen
from accelerl.envs import custom, probe_env
from accelerl.envs.custom import env_name
from accelerl.errors import AccelerlError, ConfigError

TESTS = Path(__file__).resolve().parent
SHORT = {"eval_every": 200, "eval_episodes": 1, "checkpoint_every": 500, "bc_every": 100, "bc_updates": 2}


class Recorder(Callback):
    every_steps = 250

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_start(self, e):
        self.events.append(("start", e.env_step))

    def on_step(self, e):
        self.events.append(("step", e.env_step))

    def on_evaluation(self, e):
        self.events.append(("evaluation", e.env_step, tuple(sorted(e.metrics["returns"]))))

    def on_switch(self, e):
        self.events.append(("switch", e.env_step, e.metrics["reason"]))

    def on_checkpoint(self, e):
        self.events.append(("checkpoint", e.env_step))

    def on_end(self, e):
        self.events.append(("end", e.env_step))


def test_callbacks_see_the_run_in_order_and_a_user_rule_switches_where_it_chose(tmp_path, monkeypatch):
    from accelerl.switch import SwitchRule

    rec = Recorder()
    # the built-in rule, made to say "switch" at every evaluation, must stand aside for the
    # user's rule, which picks step 550
    monkeypatch.setattr(SwitchRule, "observe", lambda self, *a: (True, "built-in rule"))
    cfg = tiny_config(tmp_path, stage1_steps="auto", switch_max_steps=1000, **SHORT)
    rule = SwitchWhen(lambda e: e.env_step >= 550 and "at 550", every_steps=50)
    result = accelerl.train(cfg, run_dir=tmp_path, callbacks=[rec, rule])

    assert result.summary["switch_step"] == 550 and result.summary["switch_reason"] == "at 550"
    assert result.stop_reason is None and result.summary["env_steps"] == 1000
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("switch") == 1
    evals = [e for e in rec.events if e[0] == "evaluation"]
    assert [e[1] for e in evals] == [0, 200, 400, 600, 800, 1000]
    assert all(e[2] == ("accelerator", "transformer") for e in evals[:3])
    assert all(e[2] == ("transformer",) for e in evals[3:])  # stage 2 evaluates the acting policy
    assert [e[1] for e in rec.events if e[0] == "checkpoint"] == [0, 500, 1000]  # 1000 is due and last: once
    assert [e[1] for e in rec.events if e[0] == "step"] == [250, 500, 750, 1000]
    # order within a step: evaluation before the step hooks before the switch (at 550: step, switch)
    assert rec.events.index(("evaluation", 400, ("accelerator", "transformer"))) < rec.events.index(("step", 500))
    assert rec.events.index(("switch", 550, "at 550")) < rec.events.index(("evaluation", 600, ("transformer",)))
    rows = read_metrics(tmp_path)
    assert [r["env_step"] for r in rows if r["event"].startswith("switch")] == ["550"]
    assert result.policy().predict(torch.zeros(3).numpy()).shape == (1,)
    assert result.policy("accelerator").predict(torch.zeros(3).numpy()).shape == (1,)


def test_a_stop_request_ends_with_a_checkpoint_that_resumes_like_an_uninterrupted_run(tmp_path):
    """Stopped between evaluations and checkpoints (step 250; GTrXL transformer blocks), then
    resumed: the metrics are those of a run that was never stopped."""

    def stop_at_250(e):
        if e.kind == "step" and e.env_step == 250:
            e.request_stop("enough")

    stop_at_250.every_steps = 50  # a plain function gets step events when it says how often
    overrides = {"transformer": "gtrxl", **SHORT}
    full = accelerl.train(tiny_config(tmp_path / "full", **overrides), run_dir=tmp_path / "full")
    stopped = accelerl.train(tiny_config(tmp_path / "cut", **overrides), run_dir=tmp_path / "cut",
                             callbacks=[stop_at_250])
    assert stopped.stop_reason == "enough" and stopped.summary["env_steps"] == 250
    assert read_summary(tmp_path / "cut")["stop_reason"] == "enough"
    assert checkpoint.load(stopped.checkpoint)["env_step"] == 250
    assert max(int(r["env_step"]) for r in read_metrics(tmp_path / "cut")) == 200  # no extra evaluation
    resumed = accelerl.resume(tmp_path / "cut")
    assert resumed.summary["env_steps"] == 1000 and resumed.stop_reason is None
    assert comparable(read_metrics(tmp_path / "cut")) == comparable(read_metrics(tmp_path / "full"))
    assert full.summary["final_return"] == resumed.summary["final_return"]


@pytest.mark.parametrize(("returns", "policy", "stops"), [
    ({"transformer": -50.0, "accelerator": -900.0}, None, True),
    ({"transformer": -500.0, "accelerator": -50.0}, None, False),   # the transformer by default
    ({"transformer": -500.0, "accelerator": -50.0}, "accelerator", True),
    ({"accelerator": -99.0}, None, True),                            # --mode accelerator has no transformer
    ({"transformer": -100.0}, None, True),                           # reaching the threshold counts
])
def test_stop_on_return(returns, policy, stops):
    cbs = Callbacks([StopOnReturn(-100.0, policy)], Path("."))
    control = cbs.fire("evaluation", 5, "stage1", {"returns": returns})
    assert (control.stop is not None) == stops


def test_events_are_read_only_and_plain_functions_are_callbacks():
    seen = []
    cbs = Callbacks([seen.append], Path("."))
    cbs.fire("evaluation", 3, "stage1", {"returns": {"accelerator": 1.0}, "losses": [1.0]})
    (event,) = seen
    with pytest.raises(TypeError):
        event.metrics["returns"]["accelerator"] = 5.0
    with pytest.raises(TypeError):
        event.metrics["new"] = 1
    with pytest.raises(TypeError, match="hooks"):
        Callbacks([3], Path("."))
    with pytest.raises(ValueError, match="every_steps"):
        Callbacks([SwitchWhen(lambda e: True, every_steps=0)], Path("."))


def test_a_switch_rule_is_asked_in_stage_1_after_the_initial_evaluation():
    cbs = Callbacks([SwitchWhen(lambda e: True, every_steps=1)], Path("."))
    assert cbs.fire("step", 10, "stage2", {}).switch is None
    assert cbs.fire("evaluation", 0, "stage1", {"initial": True, "returns": {}}).switch is None
    assert cbs.fire("step", 10, "stage1", {}).switch == "user switch rule"
    assert cbs.fire("evaluation", 10, "stage1", {"initial": False, "returns": {}}).switch == "user switch rule"


def test_plain_functions_get_step_events_only_when_they_say_how_often():
    def every_event(e):
        pass

    def every_100(e):
        pass

    every_100.every_steps = 100
    cbs = Callbacks([every_event, every_100], Path("."))
    assert [cb.fn for cb in cbs.due_for_step(200, 1)] == [every_100]
    assert cbs.due_for_step(201, 1) == []


def test_train_refuses_an_existing_run_and_unknown_settings(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting: total_step"):
        accelerl.train(run_dir=tmp_path, env="Pendulum-v1", total_step=5)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(AccelerlError, match="already holds a run"):
        accelerl.train(run_dir=tmp_path, env="Pendulum-v1")
    with pytest.raises(AccelerlError, match="drop --seed"):
        accelerl.resume(tmp_path, seed=3)


# --------------------------------------------------------------------------------- any env
def test_an_entry_point_env_trains_both_stages_and_resumes_from_the_command_line(tmp_path):
    """A user's env class, named "module:Class", in training subprocesses started next to it."""
    run_dir = tmp_path / "run"
    flags = [a if a != "Pendulum-v1" else "custom_envs:PointEnv" for a in PENDULUM_SHORT]
    rc, _, err = run_cli(["train", *flags, "--total-steps", "400", "--run-dir", run_dir], cwd=TESTS)
    assert rc == 0, err[-2000:]
    rc, _, err = run_cli(["train", "--resume", run_dir, "--total-steps", "600"], cwd=TESTS)
    assert rc == 0, err[-2000:]
    summary = read_summary(run_dir)
    assert summary["env"] == "custom_envs:PointEnv" and summary["env_steps"] == 600
    assert summary["switch_step"] == 300
    stages = {r["stage"] for r in read_metrics(run_dir)}
    assert {"stage1", "stage2"} <= stages


def test_distinct_callables_never_share_an_id():
    def make_a():
        return None

    lambdas = [lambda: 1, lambda: 2]
    names = [env_name(f) for f in lambdas]
    assert names[0] != names[1] and all(n.startswith("python:") for n in names)
    assert env_name(lambdas[0]) == names[0]  # the same object keeps its id
    assert env_name(make_a) == env_name(make_a)


def test_a_module_that_registers_an_unversioned_id_keeps_gymnasiums_meaning():
    """gymnasium's "module:EnvId": import the module, make the id it registered (with its
    TimeLimit), even where the module also has an attribute of that name."""
    import gymnasium as gym

    from accelerl.envs.custom import make_gym

    env = make_gym("custom_envs:Registered")
    assert env.spec.max_episode_steps == 7 and env.spec.id == "Registered"
    assert "Registered" in gym.registry


def test_env_forms_resolve_to_the_same_task():
    from custom_envs import PointEnv, make_point_env

    assert env_name(PointEnv) == "custom_envs:PointEnv"  # an importable class is stored as its entry point
    assert env_name(make_point_env) == "custom_envs:make_point_env"
    for env in ("custom_envs:PointEnv", "custom_envs:make_point_env"):
        spec = probe_env(env, None)
        assert (spec.obs_dim, spec.act_dim) == (3, 2) and spec.action_low == pytest.approx((-0.2, -0.1))


def test_a_bare_callable_trains_and_resumes_only_when_given_again(tmp_path, monkeypatch):
    from custom_envs import PointEnv

    def make():  # a local function: no entry point another process could import
        return PointEnv()

    cfg = tiny_config(tmp_path, mode="accelerator", total_steps=300, **SHORT)
    assert accelerl.train(cfg, run_dir=tmp_path, env=make).config.env.startswith("python:")
    rc, _, err = run_cli(["train", "--resume", tmp_path, "--total-steps", "400"])  # another process
    assert_one_error_line(rc, err, "pass the same callable")
    with pytest.raises(ConfigError, match="was trained on env"):
        accelerl.resume(tmp_path, env=PointEnv, total_steps=400)
    assert accelerl.resume(tmp_path, env=make, total_steps=400).summary["env_steps"] == 400
    # a new process knows no callables: the same one, given again, takes over the run's id
    monkeypatch.setattr(custom, "_CALLABLES", {})
    assert accelerl.load_policy(tmp_path, "accelerator", env=make).predict(np.zeros(3, np.float32)).shape == (2,)
    assert accelerl.resume(tmp_path, env=make, total_steps=500).summary["env_steps"] == 500
    with pytest.raises(ConfigError, match="worker processes"):
        accelerl.train(run_dir=tmp_path / "async", env=make, vector_env="async", num_envs=2,
                       buffer_size=2000, batch_size=32, bc_batch_size=32)


@pytest.mark.parametrize(("env", "needle"), [
    ("custom_envs:DiscreteEnv", "Discrete action space"),
    ("custom_envs:DictObsEnv", "FlattenObservation"),
    ("custom_envs:UnboundedActionEnv", "unbounded action space"),
    ("custom_envs:NoSuchEnv", "has no 'NoSuchEnv'"),
    ("no_such_module:Env", "cannot import module 'no_such_module'"),
    ("custom_envs:not_an_env", "must inherit from the gymnasium.Env"),
])
def test_envs_accelerl_cannot_train_are_refused_up_front(env, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        probe_env(env, None)


def test_an_env_accelerl_cannot_train_is_one_line_on_the_command_line():
    rc, _, err = cli_here(["train", "--env", "custom_envs:DiscreteEnv", "--device", "cpu"], cwd=TESTS)
    assert_one_error_line(rc, err, "Discrete action space")



def test_the_example_trains_a_custom_env_with_a_callback(tmp_path):
    import subprocess
    import sys

    from conftest import SUBPROCESS_ENV

    proc = subprocess.run([sys.executable, str(TESTS.parent / "examples" / "custom_env_callback.py"), "--total-steps",
                           "800", "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                          env=SUBPROCESS_ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "switch:" in proc.stdout and "transformer over 5 episodes:" in proc.stdout
    assert read_summary(tmp_path / "run")["env"] == "python:Reacher2D"
