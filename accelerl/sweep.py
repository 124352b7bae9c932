"""`accelerl sweep`: a grid of `accelerl train` runs, in parallel processes or on a Ray cluster.

Every grid point is one ``accelerl train`` subprocess with its own run directory under ``--out``,
named after its grid values. A point whose run finished (``summary.json``) is skipped; one that
was interrupted (a checkpoint, no summary) is resumed, and a finished one extended when
``--total-steps`` grew; the rest start. A point whose folder holds a run made with other settings
is refused up front. Every point's config is
validated before anything runs, so a typo fails in one line instead of after hours. Results of
all finished points are collected into ``OUT/results.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from accelerl.config import RESUMABLE_CHANGES, TrainConfig, build_config, read_run_config
from accelerl.errors import AccelerlError, ConfigError

RESULT_FIELDS = ["run", "status", "env_steps", "final_transformer", "final_accelerator", "best_return", "switch_step",
                 "switch_reason", "wall_time_s", "steps_per_s"]
FIELDS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def expand_grid(grid: list[list[str]]) -> list[dict[str, str]]:
    """``[["env", "A", "B"], ["seed", "0", "1"]]`` -> the 4 points, in row-major order (the last
    key varies fastest). Keys are train flags without dashes (``obs-mask`` or ``obs_mask``)."""
    keys: list[str] = []
    values: list[list[str]] = []
    for entry in grid:
        if len(entry) < 2:
            raise ConfigError(f"--grid {' '.join(entry)}: give a flag name and at least one value")
        key = entry[0].lstrip("-").replace("-", "_")
        if key not in FIELDS or key in ("run_dir",):
            raise ConfigError(f"--grid {entry[0]}: not a flag of 'accelerl train'")
        if key in keys:
            raise ConfigError(f"--grid {entry[0]} is given twice")
        repeated = sorted({v for v in entry[1:] if entry[1:].count(v) > 1})
        if repeated:  # two points would share one run directory
            raise ConfigError(f"--grid {entry[0]} repeats the value {repeated[0]}")
        keys.append(key)
        values.append(entry[1:])
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def point_name(point: dict[str, str]) -> str:
    """A run-directory name that says the point's grid values, e.g. ``env=Hopper-v5__seed=1``."""
    parts = [f"{k}={v}" for k, v in point.items()]
    name = "__".join(parts) or "run"
    return "".join(c if c.isalnum() or c in "=_-.+," else "-" for c in name)


def point_flags(point: dict[str, str], train_flags: list[str]) -> list[str]:
    flags = list(train_flags)
    for key, value in point.items():
        flag = key.replace("_", "-")
        if value.lower() == "none":
            continue  # the flag's default
        if FIELDS[key] == "bool":  # an on/off flag: --flag or --no-flag
            if value.lower() not in TRUE + FALSE:
                raise ConfigError(f"--grid {flag}: an on/off flag takes true or false, got {value!r}")
            flags.append(f"--{flag}" if value.lower() in TRUE else f"--no-{flag}")
        else:
            flags += [f"--{flag}", value]
    return flags


def plan(points: list[dict[str, str]], train_flags: list[str], parse: Callable[[list[str]], dict],
         out: Path) -> list[tuple[list[str], str, int, str]]:
    """(flags, run directory, total steps, device) of every point, each checked by
    :func:`check_run`: all before anything runs."""
    jobs = []
    for point in points:
        name = point_name(point)
        try:
            flags = point_flags(point, train_flags)
        except AccelerlError as exc:
            raise ConfigError(f"grid point {name}: {exc}") from None
        jobs.append(check_run(flags, out / name, parse, name=f"grid point {name}"))
    return jobs


def check_run(flags: list[str], run_dir: Path, parse: Callable[[list[str]], dict],
              name: str | None = None) -> tuple[list[str], str, int, str]:
    """Build (and so validate) one run's config, and check that a run already in its folder was
    made with the same settings (bar --total-steps, which extends or keeps it, and --device, which
    a resume may change); returns the job :func:`run_all` takes."""
    try:
        cfg = build_config(parse(flags))
    except AccelerlError as exc:
        raise ConfigError(f"{name or run_dir}: {exc}") from None
    if (run_dir / "config.json").exists():
        try:
            saved = TrainConfig.from_dict(read_run_config(run_dir)).to_dict()
        except AccelerlError as exc:
            raise ConfigError(f"{run_dir} holds a run this sweep cannot read ({exc}); use another --out") from None
        wanted = cfg.to_dict()
        diff = sorted(k for k in wanted if k not in RESUMABLE_CHANGES and saved.get(k) != wanted[k])
        if diff:
            raise ConfigError(f"{run_dir} was run with other settings (differs in: {', '.join(diff)}); "
                              "use another --out, or remove that run")
    return flags, str(run_dir), cfg.total_steps, cfg.device


def run_point(flags: list[str], run_dir: str, threads: int, total_steps: int, device: str = "auto") -> str:
    """Run (or resume, extend or skip) one point; returns its status. Used locally and on Ray workers."""
    run_dir_path = Path(run_dir)
    summary = run_dir_path / "summary.json"
    finished = summary.exists()
    if finished and json.loads(summary.read_text())["env_steps"] >= total_steps:
        return "done earlier"
    resume = (run_dir_path / "checkpoints" / "latest.pt").exists()
    cmd = [sys.executable, "-m", "accelerl.cli", "train",
           *(["--resume", run_dir, "--total-steps", str(total_steps), "--device", device] if resume
             else [*flags, "--run-dir", run_dir])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        run_dir_path.mkdir(parents=True, exist_ok=True)
        (run_dir_path / "sweep-error.log").write_text(proc.stderr)
        return f"failed (exit {proc.returncode}; see {run_dir}/sweep-error.log)"
    return ("extended" if finished else "resumed") if resume else "ran"


def run_all(jobs: list[tuple[list[str], str, int, str]], workers: int, ray_address: str | None,
            report: Callable[[str, str], None]) -> dict[str, str]:
    """Run every (flags, run_dir, total_steps, device); ``workers`` processes at once locally, or as Ray tasks."""
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    if ray_address is None:
        def one(job: tuple[list[str], str, int, str]) -> tuple[str, str]:
            status = run_point(job[0], job[1], threads, job[2], job[3])
            report(job[1], status)
            return job[1], status

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(pool.map(one, jobs))
    ray = require_ray()
    ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(run_point)
    futures = {remote.remote(flags, run_dir, 1, total, device): run_dir for flags, run_dir, total, device in jobs}
    statuses: dict[str, str] = {}
    pending = list(futures)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        run_dir = futures[done[0]]
        statuses[run_dir] = ray.get(done[0])
        report(run_dir, statuses[run_dir])
    return statuses


def require_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'accelerl[ray]'") from None
    return ray


def collect(out: Path, points: list[dict[str, str]], statuses: dict[str, str]) -> list[dict]:
    """One row per point: its grid values and its summary (empty where it did not finish)."""
    rows = []
    for point in points:
        run_dir = out / point_name(point)
        row: dict = {**point, "run": str(run_dir), "status": statuses.get(str(run_dir), "")}
        summary_path = run_dir / "summary.json"
        if summary_path.exists():
            s = json.loads(summary_path.read_text())
            final = s.get("final_return") or {}
            row.update(env_steps=s["env_steps"], final_transformer=final.get("transformer", ""),
                       final_accelerator=final.get("accelerator", ""), best_return=s.get("best_return", ""),
                       switch_step=s.get("switch_step") or "", switch_reason=s.get("switch_reason") or "",
                       wall_time_s=s.get("wall_time_s", ""), steps_per_s=s.get("steps_per_s", ""))
        rows.append(row)
    with (out / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*points[0].keys(), *RESULT_FIELDS], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows
