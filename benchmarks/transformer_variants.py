"""Transformer variants: does acceleration still help a GTrXL transformer, and does gating narrow
the gap to training from scratch?

Run by hand (not in CI); resumable like learning.py (finished runs are reused):

    python benchmarks/transformer_variants.py --jobs 2 --write-docs

Grid: tasks x {gpt, gtrxl} x {accelerate, scratch} x seeds, every run with the same seeds,
evaluation and budget per task. Defaults: Hopper-v5 (paper sizes, quick-preset schedule) and
velocity-masked Pendulum-v1 (LSTM accelerator; small critic/LSTM width so the grid fits a
2-core machine in about an hour). Outputs ``<results-dir>/transformer-variants.csv``, one
figure per task, and with ``--write-docs`` the section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import command_line, machine_line, replace_section, run_parallel, save_figure, write_csv  # noqa: E402
from learning import aligned, interval_cells, run_record  # noqa: E402

# task -> train flags of its budget (the quick preset underneath)
TASKS = {
    "Hopper-v5": ["--env", "Hopper-v5", "--total-steps", "12000", "--learning-starts", "2000", "--eval-every",
                  "1500", "--switch-max-steps", "6000"],
    "Pendulum-v1-velocities": ["--env", "Pendulum-v1", "--obs-mask", "velocities", "--total-steps", "10000",
                               "--learning-starts", "1000", "--eval-every", "1000", "--switch-max-steps", "5000",
                               "--hidden-size", "64"],
}
VARIANTS = ["gpt", "gtrxl"]
MODES = ["accelerate", "scratch"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--extra", default="", help="more train flags for every run (after the task's own)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-variants"))
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)

    jobs = []
    for task, variant, mode, seed in itertools.product(args.tasks, VARIANTS, MODES, args.seeds):
        flags = ["--preset", "quick", *TASKS[task], "--transformer", variant, "--mode", mode, "--seed", str(seed),
                 "--eval-episodes", str(args.eval_episodes), *args.extra.split()]
        jobs.append(((task, variant, mode, seed), flags, Path(args.out) / task / variant / mode / f"s{seed}"))
    run_parallel([(flags, run_dir) for _, flags, run_dir in jobs], args.jobs)

    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    per_run, groups = [], {}
    for (task, variant, mode, seed), _, run_dir in jobs:
        row = {"task": task, "transformer": variant, "mode": mode, "seed": seed, **run_record(run_dir, mode)}
        per_run.append(row)
        groups.setdefault((task, variant, mode), []).append(row)
    write_csv(results_dir / "transformer-variants.csv", per_run,
              ["task", "transformer", "mode", "seed", "final", "auc", "switch_step", "wall_time_s"])

    lines = [f"Command: `{command_line('transformer_variants.py', argv)}` ({machine_line(args.jobs)}; "
             f"{len(args.seeds)} seed(s) per row, the same seeds in every row; {args.eval_episodes} deterministic "
             "evaluation episodes per point; IQM and 95% stratified bootstrap interval over seeds).", "",
             "| task | transformer | mode | final return | area under curve | switch step | wall time (s) |",
             "|---|---|---|---|---|---|---|"]
    for (task, variant, mode), runs in groups.items():
        switches = ", ".join(str(r["switch_step"]) for r in runs) if mode == "accelerate" else "–"
        lines.append(f"| {task} | {variant} | {mode} | {interval_cells(runs)} | {switches} | "
                     f"{np.mean([r['wall_time_s'] for r in runs]):.0f} |")
    figures = plot(groups, results_dir)
    lines += ["", *[f"![{f.stem}]({os.path.relpath(f, ROOT / 'docs')})" for f in figures]]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        replace_section(ROOT / "docs" / "RESULTS.md", "transformer-variants", table)


def plot(groups: dict[tuple, list[dict]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    for task in sorted({t for t, _, _ in groups}):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for (t, variant, mode), runs in sorted(groups.items()):
            if t != task:
                continue
            common, table = aligned(runs)
            ax.plot(common, table.mean(axis=0), label=f"{variant}, {mode}",
                    linestyle="-" if mode == "accelerate" else "--", color="C0" if variant == "gpt" else "C3")
        figures.append(save_figure(fig, ax, f"{task}: transformer return (mean of {len(runs)} seed(s))",
                                   out_dir / f"transformer-variants-{task}.png"))
    return figures


if __name__ == "__main__":
    main()
