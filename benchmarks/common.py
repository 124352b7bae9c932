"""What the benchmark scripts share: running `accelerl train` resumably, CSV, RESULTS.md sections."""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def train_run(flags: list[str], run_dir: Path, threads: int | None = None) -> None:
    """``accelerl train FLAGS --run-dir RUN_DIR`` in a subprocess: a finished run (summary.json)
    is reused, an interrupted one (a checkpoint, no summary) resumed, anything else started afresh
    (a run killed before its first checkpoint has nothing to resume)."""
    if (run_dir / "summary.json").exists():
        return
    if (run_dir / "checkpoints" / "latest.pt").exists():
        cmd = [sys.executable, "-m", "accelerl.cli", "train", "--resume", str(run_dir)]
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = [sys.executable, "-m", "accelerl.cli", "train", *flags, "--run-dir", str(run_dir)]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")


def run_parallel(runs: list[tuple[list[str], Path]], jobs: int) -> None:
    """Every (flags, run_dir) through :func:`train_run`, ``jobs`` at a time; the machine's cores are
    split between them (one torch thread pool each) so parallel runs do not oversubscribe."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda run: train_run(run[0], run[1], threads), runs))


def call_seconds(fn, calls: int, warmup: int = 1) -> list[float]:
    """Wall seconds of each of ``calls`` calls of ``fn``, after ``warmup`` untimed ones."""
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def cpu_name() -> str:
    """The CPU's model name (2-core machines of one name differ less than 2x between names)."""
    import platform

    with contextlib.suppress(OSError):
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        if names:
            return names[0]
    return platform.processor() or platform.machine()


def machine_line(jobs: int) -> str:
    """Where a grid ran, for the docs: the CPU and how it was shared between parallel runs."""
    import torch

    cores = os.cpu_count() or 1
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (f"{cpu_name()}, {cores} cores{gpu}; {jobs} run(s) at a time, "
            f"{max(1, cores // jobs)} torch thread(s) each")


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace the text between <!-- name:start --> and <!-- name:end --> markers (append if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n{block}\n"
    path.write_text(text)


def add_run_args(parser: argparse.ArgumentParser, total_steps: int, eval_episodes: int, out: Path) -> None:
    """The flags every grid benchmark takes: budget, evaluation, seeds, outputs."""
    parser.add_argument("--total-steps", type=int, default=total_steps)
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=eval_episodes)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs in parallel (processes); each gets cpu_count/jobs torch threads")
    parser.add_argument("--out", default=str(out))
    parser.add_argument("--extra", default="", help="more train flags for every run, e.g. '--pixels' or '--d-model 64'")
    parser.add_argument("--results-dir", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--write-docs", action="store_true", help="also rewrite this benchmark's docs/RESULTS.md section")


def base_flags(args: argparse.Namespace, checkpoint_every: int) -> list[str]:
    return ["--env", args.env, "--algo", args.algo, "--total-steps", str(args.total_steps),
            "--learning-starts", str(args.learning_starts), "--eval-every", str(args.eval_every),
            "--eval-episodes", str(args.eval_episodes), "--checkpoint-every", str(checkpoint_every)]


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that regenerates a result, exactly as it was given (bar --write-docs)."""
    given = list(sys.argv[1:] if argv is None else argv)
    return f"python benchmarks/{script} {shlex.join(a for a in given if a != '--write-docs')}".rstrip()


def save_figure(fig, ax, title: str, path: Path, ylabel: str = "eval return", xlabel: str = "env steps") -> Path:
    """Title, axes, grid and legend of a learning-curve figure; written to ``path`` and closed."""
    import matplotlib.pyplot as plt

    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
