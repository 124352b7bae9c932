"""Learning: accelerated transformer vs transformer from scratch vs accelerator alone.

Run by hand (not in CI). Same envs, seeds, evaluation and budget for every mode; runs go in
parallel processes and a re-run skips finished runs and resumes interrupted ones:

    python benchmarks/learning.py --budget small --jobs 2 --write-docs     # Hopper-v5, 2 seeds
    python benchmarks/learning.py --budget paper --jobs 16                # 4 tasks x {MDP, -P} x TD3/SAC, 5 seeds, 1M steps

``--finished-only`` starts nothing and reports the finished runs of the grid (the table says how
many were left out), to publish part of a grid that is still running or was cut short.

Outputs: ``<results-dir>/learning.csv`` (final and area-under-curve return per run), one figure
per task (IQM across seeds with a 95% bootstrap band), and with ``--write-docs`` the learning
section of docs/RESULTS.md. Across seeds: the interquartile mean with rliable's 95% stratified bootstrap
interval (the ``bench`` extra). ``benchmarks/campaign.py`` answers the questions of docs/RESULTS.md
with named plans; this script is the free-form grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

from accelerl.plots import read_metrics
from accelerl.policy import policy_of
from accelerl.stats import area_under_curve, iqm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import command_line, machine_line, replace_section, run_parallel, save_figure, write_csv  # noqa: E402

BUDGETS = {
    # small: under an hour on 2 CPU cores with --jobs 2 (the transformer runs at ~30 env steps/s there)
    "small": {"envs": ["Hopper-v5"], "masks": ["none"], "algos": ["td3"], "seeds": [0, 1], "total_steps": 30_000,
              "eval_every": 3_000, "eval_episodes": 10, "learning_starts": 5_000},
    "paper": {"envs": ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5"], "masks": ["none", "velocities"],
              "algos": ["td3", "sac"], "seeds": [0, 1, 2, 3, 4], "total_steps": 1_000_000, "eval_every": 10_000,
              "eval_episodes": 10, "learning_starts": 25_000},
}
MODES = ["accelerate", "scratch", "accelerator"]


def curve(run_dir: Path, mode: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in read_metrics(run_dir) if r["policy"] == policy_of(mode) and r["return_mean"]]
    steps = np.array([int(r["env_step"]) for r in rows])
    returns = np.array([float(r["return_mean"]) for r in rows])
    order = np.argsort(steps, kind="stable")
    steps, returns = steps[order], returns[order]
    keep = np.r_[steps[1:] != steps[:-1], True]  # one value per step (the last logged)
    return steps[keep], returns[keep]


def run_record(run_dir: Path, mode: str) -> dict:
    """One finished run: its curve of the policy the mode is for, final return, area under the
    curve, switch step and wall time."""
    steps, returns = curve(run_dir, mode)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"final": returns[-1], "auc": area_under_curve(steps, returns), "wall_time_s": summary["wall_time_s"],
            "switch_step": summary["switch_step"], "steps": steps, "returns": returns}


def interval_cells(runs: list[dict]) -> str:
    """'final [low, high] | area [low, high]' over the runs: IQM and 95% stratified bootstrap interval."""
    return f"{iqm([r['final'] for r in runs]).cell()} | {iqm([r['auc'] for r in runs]).cell()}"


def aligned(runs: list[dict]) -> tuple[list[int], np.ndarray]:
    """The evaluation steps every run has, and each run's returns at them ([runs, steps])."""
    common = sorted(set.intersection(*(set(r["steps"].tolist()) for r in runs)))
    return common, np.array([[r["returns"][list(r["steps"]).index(s)] for s in common] for r in runs])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=list(BUDGETS), default="small")
    parser.add_argument("--envs", nargs="+")
    parser.add_argument("--masks", nargs="+", help="'none' and/or an --obs-mask value")
    parser.add_argument("--algos", nargs="+")
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--total-steps", type=int)
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--eval-episodes", type=int)
    parser.add_argument("--learning-starts", type=int)
    parser.add_argument("--extra", default="", help="more train flags for every run, e.g. '--d-model 64'")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-learning"))
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--finished-only", action="store_true",
                        help="start nothing: report the runs of the grid that have finished (part of a long grid)")
    args = parser.parse_args(argv)
    b = dict(BUDGETS[args.budget])
    for key in ("envs", "masks", "algos", "seeds", "total_steps", "eval_every", "eval_episodes", "learning_starts"):
        if getattr(args, key) is not None:
            b[key] = getattr(args, key)

    jobs = []
    for env, mask, algo, mode, seed in itertools.product(b["envs"], b["masks"], b["algos"], args.modes, b["seeds"]):
        flags = ["--env", env, "--algo", algo, "--mode", mode, "--seed", str(seed), "--total-steps",
                 str(b["total_steps"]), "--eval-every", str(b["eval_every"]), "--eval-episodes",
                 str(b["eval_episodes"]), "--learning-starts", str(b["learning_starts"]),
                 "--checkpoint-every", str(max(b["eval_every"], b["total_steps"] // 10)), *args.extra.split()]
        if mask != "none":
            flags += ["--obs-mask", mask]
        task = env + ("" if mask == "none" else f"-{mask}")
        jobs.append(((task, algo, mode, seed), flags, Path(args.out) / task / algo / mode / f"s{seed}"))
    left_out = 0
    if args.finished_only:
        finished = [job for job in jobs if (job[2] / "summary.json").exists()]
        if not finished:
            raise SystemExit(f"learning.py: no run of this grid has finished yet under {args.out}")
        left_out, jobs = len(jobs) - len(finished), finished
    else:
        run_parallel([(flags, run_dir) for _, flags, run_dir in jobs], args.jobs)

    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    per_run = []
    for (task, algo, mode, seed), _, run_dir in jobs:
        per_run.append({"task": task, "algo": algo, "mode": mode, "seed": seed, **run_record(run_dir, mode)})
    write_csv(results_dir / "learning.csv", per_run,
              ["task", "algo", "mode", "seed", "final", "auc", "wall_time_s", "switch_step"])

    lines = [f"Command: `{command_line('learning.py', argv)}` ({machine_line(args.jobs)}; "
             f"{len(b['seeds'])} seed(s), {b['total_steps']} env steps, {b['eval_episodes']} deterministic eval "
             f"episodes every {b['eval_every']} steps; IQM and 95% stratified bootstrap interval"
             f"{f'; {left_out} unfinished run(s) of the grid left out' if left_out else ''}).", "",
             "| task | algo | mode | final return | area under curve | wall time (s) |", "|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in per_run:
        groups.setdefault((r["task"], r["algo"], r["mode"]), []).append(r)
    for (task, algo, mode), runs in groups.items():
        wall = np.mean([r["wall_time_s"] for r in runs])
        lines.append(f"| {task} | {algo} | {mode} | {interval_cells(runs)} | {wall:.0f} |")
    figures = plot_groups(groups, results_dir)
    lines += ["", *[f"![{f.stem}]({os.path.relpath(f, ROOT / 'docs')})" for f in figures]]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        replace_section(ROOT / "docs" / "RESULTS.md", "learning", table)


def plot_groups(groups: dict[tuple, list[dict]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    for task, algo in sorted({(t, a) for t, a, _ in groups}):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for mode in MODES:
            runs = groups.get((task, algo, mode))
            if not runs:
                continue
            common, table = aligned(runs)
            est = [iqm(table[:, i], reps=500) for i in range(len(common))]
            ax.plot(common, [e.point for e in est], label=f"{mode} ({policy_of(mode)})")
            ax.fill_between(common, [e.low for e in est], [e.high for e in est], alpha=0.2)
        figures.append(save_figure(fig, ax, f"{task} {algo}", out_dir / f"learning-{task}-{algo}.png"))
    return figures


if __name__ == "__main__":
    main()
