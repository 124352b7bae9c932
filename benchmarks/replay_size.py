"""Stage-2 replay size: is a 10-20k buffer enough, as the paper says? 10k vs 20k vs 100k vs 1M.

Run by hand (not in CI), e.g.

    python benchmarks/replay_size.py --env Hopper-v5 --total-steps 300000 --stage1-steps 100000 --seeds 0 1 2 --write-docs

Every run is ``--mode accelerate`` with the same fixed switch step, seeds and evaluation; only
``--stage2-buffer-size`` differs. Reported per size: the transformer's final return and its area
under the stage-2 learning curve (IQM over seeds with a 95% stratified bootstrap interval, rliable),
and the peak bytes of the stage-2 buffer. CSV in ``benchmarks/results/replay-size-<env>.csv``;
``--write-docs`` replaces the matching section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import (  # noqa: E402
    add_run_args,
    base_flags,
    command_line,
    machine_line,
    replace_section,
    run_parallel,
    write_csv,
)

from accelerl.stats import area_under_curve, iqm  # noqa: E402


def stage2_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with (run_dir / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["stage"] == "stage2" and r["policy"] == "transformer"
                and r["return_mean"]]
    return np.array([int(r["env_step"]) for r in rows]), np.array([float(r["return_mean"]) for r in rows])


def plot_sizes(curves: dict[int, list[tuple[np.ndarray, np.ndarray]]], title: str, path: Path) -> Path:
    """The transformer's stage-2 return per buffer size: the seeds' mean on their shared steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for size, runs in curves.items():
        common = sorted(set.intersection(*(set(steps.tolist()) for steps, _ in runs)))
        mean = [np.mean([returns[list(steps).index(x)] for steps, returns in runs]) for x in common]
        ax.plot(common, mean, marker=".", label=f"{size:,} ({len(runs)} seed(s))")
    ax.set_title(title)
    ax.set_xlabel("env steps")
    ax.set_ylabel("transformer eval return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="stage-2 buffer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--algo", default="td3")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 100_000, 1_000_000])
    parser.add_argument("--stage1-steps", type=int, default=100_000)
    add_run_args(parser, total_steps=300_000, eval_episodes=10, out=ROOT / "runs" / "bench-replay-size")
    args = parser.parse_args(argv)

    jobs = []
    for size in args.sizes:
        for seed in args.seeds:
            flags = [*base_flags(args, checkpoint_every=max(args.eval_every, args.total_steps // 10)),
                     "--mode", "accelerate", "--stage1-steps", str(args.stage1_steps), "--stage2-buffer-size", str(size),
                     "--seed", str(seed), *args.extra.split()]
            jobs.append((size, seed, flags, Path(args.out) / args.env / f"buffer{size}" / f"s{seed}"))
    run_parallel([(flags, run_dir) for _, _, flags, run_dir in jobs], args.jobs)

    per_run = []
    for size, seed, _, run_dir in jobs:
        steps, returns = stage2_curve(run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
        per_run.append({"stage2_buffer_size": size, "seed": seed, "final": float(returns[-1]),
                        "auc": area_under_curve(steps, returns), "replay_bytes": summary["replay_bytes"],
                        "wall_time_s": summary["wall_time_s"]})
    write_csv(Path(args.results_dir) / f"replay-size-{args.env}.csv", per_run)

    figure = plot_sizes({size: [stage2_curve(run_dir) for sz, _, _, run_dir in jobs if sz == size] for size in args.sizes},
                        f"{args.env} {args.algo}: stage 2 after a switch at {args.stage1_steps}",
                        Path(args.results_dir) / f"replay-size-{args.env}.png")
    lines = [f"Command: `{command_line('replay_size.py', argv)}` ({machine_line(args.jobs)}; "
             f"{len(args.seeds)} seed(s); switch at {args.stage1_steps}; {args.eval_episodes} deterministic eval "
             f"episodes every {args.eval_every} steps; IQM [95% stratified bootstrap interval]).", "",
             "| stage-2 buffer | final return | stage-2 area under curve | stage-2 buffer bytes | wall time (s) |",
             "|---|---|---|---|---|"]
    for size in args.sizes:
        runs = [r for r in per_run if r["stage2_buffer_size"] == size]
        fin, auc = iqm([r["final"] for r in runs]), iqm([r["auc"] for r in runs])
        lines.append(f"| {size:,} | {fin.point:.0f} [{fin.low:.0f}, {fin.high:.0f}] | {auc.point:.0f} "
                     f"[{auc.low:.0f}, {auc.high:.0f}] | {runs[0]['replay_bytes']:,} | "
                     f"{np.mean([r['wall_time_s'] for r in runs]):.0f} |")
    lines += ["", f"![replay-size-{args.env}](../benchmarks/results/{figure.name})"]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        replace_section(ROOT / "docs" / "RESULTS.md", f"replay-size-{args.env}", table)


if __name__ == "__main__":
    main()
