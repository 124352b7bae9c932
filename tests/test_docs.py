"""The README is part of the contract: every flag documented, and `eval --video` works."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PENDULUM_SHORT, run_cli, train_ok

from accelerl.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_every_train_flag_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f"--{f.name.replace('_', '-')}" not in readme]
    assert not missing, f"flags missing from README.md: {missing}"


def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pytest -q" in readme and "python3 -m pytest -q" in ci
    assert "torch==2.13.0" in readme and "torch==2.13.0" in ci


def _can_render() -> bool:
    probe = ("import gymnasium as gym; e = gym.make('Hopper-v5', render_mode='rgb_array'); "
             "e.reset(seed=0); assert e.render().shape[2] == 3")
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120).returncode == 0


def test_eval_video_writes_a_gif(tmp_path):
    if not _can_render():
        pytest.skip("no off-screen OpenGL (MUJOCO_GL=egl) on this machine")
    hopper = [a if a != "Pendulum-v1" else "Hopper-v5" for a in PENDULUM_SHORT]
    run_dir = tmp_path / "run"
    train_ok([*hopper, "--total-steps", "300", "--stage1-steps", "200", "--run-dir", run_dir])
    rc, out, err = run_cli(["eval", run_dir, "--episodes", "1", "--video"])
    assert rc == 0, err
    gif = run_dir / "eval.gif"
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a") and '"video"' in out


def test_the_video_ends_on_the_terminal_frame():
    """With same-step autoreset, rendering after the vector step would show the next episode's
    first state; the last frame must be the state the episode ended in."""
    import numpy as np
    import torch

    from accelerl.envs import make_single_env, make_vector_env, probe_env
    from accelerl.envs.pixels import choose_gl_backend
    from accelerl.errors import ConfigError
    from accelerl.evaluation import run_episodes, uniform_random

    try:
        choose_gl_backend()
    except ConfigError:
        pytest.skip("no off-screen OpenGL on this machine")
    spec = probe_env("Hopper-v5", None)
    actions: list[np.ndarray] = []
    random_act = uniform_random(spec.act_dim, torch.Generator().manual_seed(0), torch.device("cpu"))

    def act(window, mask):
        actions.append(random_act(window, mask).numpy())
        return torch.as_tensor(actions[-1])

    frames: list = []
    env = make_vector_env(spec, 1, render=True)
    result = run_episodes(env, act, [7], 1, torch.device("cpu"), frames=frames)
    env.close()
    assert len(frames) == len(actions) == int(result.lengths[0]) < 1000  # Hopper falls under random actions
    replica = make_single_env(spec, render_mode="rgb_array")
    replica.reset(seed=7)
    for a in actions:
        replica.step(a[0])
    np.testing.assert_array_equal(frames[-1], replica.render())
    replica.reset()
    assert not np.array_equal(frames[-1], replica.render())
    replica.close()


def test_the_readme_python_api_names_only_what_exists():
    """The README's Python API snippet: every accelerl name, setting and result attribute it uses
    exists (running it would take a quick-preset Hopper run; tests/test_api.py runs the API)."""
    import ast
    import re

    import accelerl
    from accelerl.api import TrainResult

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    tree = ast.parse(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    calls = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "accelerl":
            assert hasattr(accelerl, node.attr), node.attr
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "result":
            assert hasattr(TrainResult, node.attr) or node.attr in TrainResult.__dataclass_fields__, node.attr
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("train", "resume"):
            calls += 1
            for kw in node.keywords:
                assert kw.arg in fields | {"config", "run_dir", "callbacks", "env"}, kw.arg
    assert calls == 3
