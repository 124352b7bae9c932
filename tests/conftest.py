"""Shared helpers: tiny run configurations, a CLI runner, metrics readers, and a synthetic
episode generator whose observations encode (env, episode, step) so replay checks are exact."""

from __future__ import annotations

import contextlib
import csv
import inspect
import io
import json
import os
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

# Two shared CPU cores: more than one intra-op thread per process makes tiny networks
# dramatically slower (threads fight over cores), in this process and in subprocesses.
torch.set_num_threads(1)
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# Files whose tests take a minute or more, longest first (the two learning files, a few long
# tests each, then by their total time in a run of the suite on a 2-core AMD EPYC): collected
# first, so that with --dist loadfile none of them starts last and runs alone on one core while
# the other idles. The rest follow in name order and take under a minute each.
LONG_FILES = ("test_learning_agents.py", "test_learning.py", "test_compile.py", "test_maniskill.py",
              "test_benchmarks.py", "test_train_e2e.py", "test_resume.py", "test_sweep.py", "test_pixels.py",
              "test_api.py", "test_export.py", "test_campaign.py")


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: a file keeps its order


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most 4 (every worker starts training subprocesses;
    more would only share the cores and memory of a big machine among tiny runs)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


# Tiny networks and buffers for end-to-end runs (seconds, not minutes).
TINY = [
    "--d-model", "32", "--d-ff", "64", "--hidden-size", "32", "--n-heads", "2",
    "--batch-size", "32", "--bc-batch-size", "32", "--buffer-size", "2000", "--stage2-buffer-size", "500",
    "--device", "cpu",
]



def tiny_config(run_dir, **overrides):
    """An in-process TrainConfig with TINY's sizes: Pendulum, 1000 steps, a switch at 500."""
    from accelerl.config import build_config

    flags = dict(zip((f[2:].replace("-", "_") for f in TINY[::2]), TINY[1::2], strict=True))
    values = {k: (v if k == "device" else int(v)) for k, v in flags.items()}
    return build_config({**values, "env": "Pendulum-v1", "total_steps": 1000, "learning_starts": 100,
                         "stage1_steps": "500", "run_dir": str(run_dir), **overrides})


# A short two-stage Pendulum run: random until 200, switch at 300, 600 steps in all.
PENDULUM_SHORT = [
    "--env", "Pendulum-v1", "--total-steps", "600", "--learning-starts", "200", "--stage1-steps", "300",
    "--eval-every", "200", "--eval-episodes", "2", "--checkpoint-every", "300", "--bc-every", "100",
    "--bc-updates", "5", *TINY,
]

# The run directory's documented schema (README.md, "The run directory"): tests follow the docs.
README = Path(__file__).resolve().parents[1] / "README.md"


def documented_names(heading: str) -> list[str]:
    """Backticked names of the README paragraph that starts with ``heading`` (parenthesised
    explanations, which list values rather than names, are dropped)."""
    text = README.read_text()
    start = text.index(heading) + len(heading)
    paragraph = text[start:text.index("\n\n", start)]
    paragraph = re.sub(r"\([^()]*\)", "", paragraph)
    return re.findall(r"`([a-z_]+)`", paragraph)


METRIC_COLUMNS = documented_names("`metrics.csv` columns:")
SUMMARY_KEYS = documented_names("`summary.json` keys:")
TIMING_COLUMNS = {"wall_time", "steps_per_s"}


def run_cli(args: list[str], timeout: float = 300, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run ``accelerl ARGS`` in a fresh interpreter; returns (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "accelerl.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=SUBPROCESS_ENV, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


# The warning filters of a fresh interpreter (Python 3.11, no -W): what a user's terminal shows.
_FRESH_FILTERS = (("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, ""),
                  ("ignore", PendingDeprecationWarning, ""), ("ignore", ImportWarning, ""),
                  ("ignore", ResourceWarning, ""))


def cli_here(args: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
    """``accelerl ARGS`` in this process, as ``run_cli`` would see it: (exit code, stdout, stderr),
    warnings written to stderr under a fresh interpreter's filters. It saves starting an interpreter
    and importing torch (seconds on 2 cores) for a check that fails fast; a traceback here is an
    uncaught exception, which fails the test. Import-time output is run_cli's to check."""
    from accelerl import cli

    out, err = io.StringIO(), io.StringIO()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    with contextlib.chdir(cwd or Path.cwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, module in reversed(_FRESH_FILTERS):
            warnings.filterwarnings(action, category=category, module=module)
        warnings.showwarning = show
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own exits (--help, usage errors)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def popen_cli(args: list[str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "accelerl.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV, cwd=cwd)


class QuietLogger:
    """A RunLogger stand-in for a Trainer driven step by step (no run(), so no logger of its own):
    messages go nowhere, and curves.png is drawn once, on the first save."""

    rows_written = 0

    def message(self, *_) -> None:
        pass


def close_envs(trainer) -> None:
    """Close an in-process Trainer's training and evaluation envs."""
    trainer.envs.close()
    trainer.eval_env.close()


def train_ok(args: list[str]) -> str:
    """Run ``accelerl train ARGS``, fail with its stderr unless it exits 0; returns stdout. The run
    goes through the CLI in this process (``cli_here``): starting an interpreter and importing torch,
    torch._dynamo and matplotlib took about 8 s per run on a 2-core AMD EPYC, the time of a short
    run itself. A run that must start alone (to be killed, or to show import-time output) uses
    ``run_cli`` or ``popen_cli``."""
    rc, out, err = cli_here(["train", *args])
    assert rc == 0, f"accelerl train exited {rc}:\n{err[-3000:]}"
    return out


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (Path(run_dir) / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


def read_header(run_dir: Path) -> list[str]:
    with (Path(run_dir) / "metrics.csv").open() as fh:
        return next(csv.reader(fh))


def eval_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["return_mean"]]


def comparable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """metrics rows without the timing columns (which legitimately differ between runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def assert_one_error_line(rc: int, err: str, *needles: str) -> str:
    """The CLI contract for user errors: exit 2, one line on stderr, no traceback."""
    assert "Traceback" not in err, err
    assert rc == 2, f"exit code {rc}, stderr:\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one stderr line, got:\n{err}"
    assert lines[0].startswith("accelerl: error:"), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------------
# Synthetic episodes for replay tests. Observation of env e, episode k, step t: [e, k, t, 1].
def synth_obs(env: int, ep: int, step: int) -> list[float]:
    return [float(env), float(ep), float(step), 1.0]


def code(env: int, ep: int, step: int) -> tuple[int, int, int]:
    return (env, ep, step)


def decode(obs: torch.Tensor) -> tuple[int, int, int]:
    return (int(obs[0]), int(obs[1]), int(obs[2]))


@dataclass
class SynthEnvs:
    """``num_envs`` streams of episodes with random lengths, each terminated or truncated.

    Ground truth is kept per env: ``written[e]`` lists the (ep, step) code of every row the
    replay buffer should have written for env e, in order (a final row per ended episode),
    ``length[(e, k)]`` and ``terminated[(e, k)]`` describe each finished episode."""

    num_envs: int
    seed: int = 0
    min_len: int = 1
    max_len: int = 12
    p_term: float = 0.5
    fixed_len: list[int] | None = None  # per-env episode lengths instead of random ones
    rng: np.random.Generator = field(init=False)
    ep: list[int] = field(init=False)
    t: list[int] = field(init=False)
    target_len: list[int] = field(init=False)
    target_term: list[bool] = field(init=False)
    written: list[list[tuple[int, int, int]]] = field(init=False)
    length: dict[tuple[int, int], int] = field(init=False, default_factory=dict)
    terminated: dict[tuple[int, int], bool] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.ep = [0] * self.num_envs
        self.t = [0] * self.num_envs
        self.target_len = [self._draw_len(e) for e in range(self.num_envs)]
        self.target_term = [bool(self.rng.random() < self.p_term) for _ in range(self.num_envs)]
        self.written = [[] for _ in range(self.num_envs)]

    def _draw_len(self, env: int) -> int:
        if self.fixed_len is not None:
            return self.fixed_len[env]
        return int(self.rng.integers(self.min_len, self.max_len + 1))

    def obs(self) -> torch.Tensor:
        return torch.tensor([synth_obs(e, self.ep[e], self.t[e]) for e in range(self.num_envs)])

    def step(self):
        """One vector step: returns (obs, act, rew, term, trunc, ended, final_obs, next_obs), where
        next_obs is what the env returns (the reset observation where an episode ended)."""
        n = self.num_envs
        obs = self.obs()
        act = torch.tensor([[float(e), float(self.ep[e]), float(self.t[e])] for e in range(n)])
        rew = torch.tensor([1000.0 * self.ep[e] + self.t[e] + 0.25 for e in range(n)])
        term = torch.zeros(n)
        trunc = torch.zeros(n)
        ended = np.zeros(n, dtype=bool)
        finals = []
        for e in range(n):
            self.written[e].append(code(e, self.ep[e], self.t[e]))
            self.t[e] += 1
            if self.t[e] == self.target_len[e]:
                ended[e] = True
                key = (e, self.ep[e])
                self.length[key] = self.t[e]
                self.terminated[key] = self.target_term[e]
                (term if self.target_term[e] else trunc)[e] = 1.0
                finals.append(synth_obs(e, self.ep[e], self.t[e]))
                self.written[e].append(code(e, self.ep[e], self.t[e]))
                self.ep[e] += 1
                self.t[e] = 0
                self.target_len[e] = self._draw_len(e)
                self.target_term[e] = bool(self.rng.random() < self.p_term)
        final_obs = torch.tensor(finals) if finals else None
        return obs, act, rew, term, trunc, ended, final_obs, self.obs()


def buffer_add(buf, obs, act, rew, term, trunc, ended, final_obs) -> None:
    """ReplayBuffer.add for one synthetic vector step, whichever add signature the buffer has
    (``(..., ended, final_obs)`` or the older ``(..., next_obs)`` with final observations)."""
    params = inspect.signature(buf.add).parameters
    if "ended" in params:
        buf.add(obs, act, rew, term, trunc, ended, final_obs)
    else:
        nxt = obs.clone()
        if final_obs is not None:
            nxt[torch.as_tensor(np.flatnonzero(ended))] = final_obs
        buf.add(obs, act, rew, term.bool(), trunc.bool(), nxt)


def tracker_step(tracker, next_obs: torch.Tensor, ended: np.ndarray) -> None:
    params = inspect.signature(tracker.step).parameters
    if "ended" in params:
        tracker.step(next_obs, ended)
    else:
        tracker.step(next_obs, torch.as_tensor(ended))


@pytest.fixture
def gen() -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(1234)
    return g
