"""Time to the same result: the accelerated transformer vs the transformer trained from scratch.

Run by hand (not in CI). Examples, from small (2 CPU cores) to the paper's scale (GPU):

    python benchmarks/time_to_return.py --env ManiSkill/PushCube-v1 --total-steps 30000 --seeds 0 --write-docs
    python benchmarks/time_to_return.py --env Walker2d-v5 --extra "--pixels" --total-steps 300000 --seeds 0 1
    python benchmarks/time_to_return.py --env ManiSkill/PushCube-v1 --extra "--obs rgb" --metric success_once
    python benchmarks/time_to_return.py --env ManiSkill/PushCube-v1 --metric success_once --target 0.8 \
        --extra "--obs rgb --preset maniskill --num-envs 16" --total-steps 100000 --seeds 0 1 2 --jobs 3   # GPU

Both modes share env, seeds, evaluation and budget. The target is ``--fraction`` (default 0.9) of
the lower of the two modes' best evaluation (mean over seeds of each mode's best), so both can reach
it, or a value fixed in advance (``--target``); reported per mode: the first env step and training
wall time (evaluations excluded) at which the transformer's evaluation reached it, or "not reached".
Results go to ``benchmarks/results/time-to-return-<tag>.csv``; ``--write-docs`` replaces the
matching section of docs/RESULTS.md.
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
import common  # noqa: E402
from common import add_run_args, base_flags, command_line, machine_line, replace_section, run_parallel, write_csv  # noqa: E402

MODES = ("accelerate", "scratch")


def transformer_curve(run_dir: Path, metric: str) -> list[tuple[int, float, float]]:
    """(env_step, wall_time, value) of every transformer evaluation."""
    with (run_dir / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["policy"] == "transformer" and r[metric]]
    return [(int(r["env_step"]), float(r["wall_time"] or 0.0), float(r[metric])) for r in rows]


def first_reach(curve: list[tuple[int, float, float]], target: float) -> tuple[int, float] | None:
    for step, wall, value in curve:
        if value >= target:
            return step, wall
    return None


def plot_curves(curves: dict[tuple[str, int], list[tuple[int, float, float]]], target: float, metric: str,
                title: str, path: Path) -> Path:
    """Each run's transformer evaluations against env steps, one colour per mode, and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for colour, mode in zip(("tab:blue", "tab:orange"), MODES, strict=True):
        for i, seed in enumerate(sorted(s for m, s in curves if m == mode)):
            steps, _, values = zip(*curves[mode, seed], strict=True)
            ax.plot(steps, values, color=colour, alpha=0.8, marker=".", label=mode if i == 0 else None)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label="target")
    return common.save_figure(fig, ax, title, path, ylabel=f"transformer eval {metric}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ManiSkill/PushCube-v1")
    parser.add_argument("--algo", default="sac")
    parser.add_argument("--metric", default="return_mean", choices=("return_mean", "success_once", "success_at_end"))
    parser.add_argument("--fraction", type=float, default=0.9)
    parser.add_argument("--target", type=float, default=None,
                        help="a fixed target for --metric (e.g. 0.8 with success_once), instead of --fraction")
    add_run_args(parser, total_steps=30_000, eval_episodes=10, out=ROOT / "runs" / "bench-time-to-return")
    args = parser.parse_args(argv)

    base = [*base_flags(args, checkpoint_every=args.eval_every), *args.extra.split()]
    tag = (args.env.replace("/", "-") + "-" + args.algo + "".join(f"_{x.lstrip('-')}" for x in args.extra.split()
                                                                  if x.startswith("--") and x != "--device"))
    runs = {(mode, seed): ([*base, "--mode", mode, "--seed", str(seed)], Path(args.out) / tag / f"{mode}__s{seed}")
            for seed in args.seeds for mode in MODES}
    run_parallel(list(runs.values()), args.jobs)
    curves = {key: transformer_curve(run_dir, args.metric) for key, (_, run_dir) in runs.items()}

    best = {m: float(np.mean([max(v for _, _, v in curves[m, s]) for s in args.seeds])) for m in MODES}
    low = min(best.values())
    target = args.fraction * low if low >= 0 else low / args.fraction
    if args.target is not None:
        target = args.target
    results = []
    for (mode, seed), curve in curves.items():
        hit = first_reach(curve, target)
        final = curve[-1]
        results.append({"mode": mode, "seed": seed, "target": round(target, 4), "reached": hit is not None,
                        "env_steps_to_target": hit[0] if hit else "", "wall_time_to_target_s": round(hit[1], 1) if hit else "",
                        "best": max(v for _, _, v in curve), "final": final[2], "total_wall_time_s": round(final[1], 1)})
        print(json.dumps(results[-1]), flush=True)

    write_csv(Path(args.results_dir) / f"time-to-return-{tag}.csv", results)
    figure = plot_curves(curves, target, args.metric, f"{args.env} {args.algo} {args.extra}".strip(),
                         Path(args.results_dir) / f"time-to-return-{tag}.png")

    cmd = command_line("time_to_return.py", argv)
    lines = [f"Command: `{cmd}` ({machine_line(args.jobs)}; {len(args.seeds)} seed(s); evaluation: "
             f"{args.eval_episodes} deterministic episodes every {args.eval_every} steps). Target: "
             + (f"{args.metric} {target:g}, fixed in advance." if args.target is not None else
                f"{args.fraction:g} x the lower mode's best {args.metric} = {target:.3g}."), "",
             f"| mode | reached (seeds) | env steps to target | training wall time to target (s) | best {args.metric} "
             f"| final | total training wall time (s) |", "|---|---|---|---|---|---|---|"]
    for mode in MODES:
        rows = [r for r in results if r["mode"] == mode]
        hits = [r for r in rows if r["reached"]]
        steps = f"{np.mean([r['env_steps_to_target'] for r in hits]):.0f}" if hits else "not reached"
        wall = f"{np.mean([r['wall_time_to_target_s'] for r in hits]):.0f}" if hits else "not reached"
        lines.append(f"| {mode} | {len(hits)}/{len(rows)} | {steps} | {wall} | {np.mean([r['best'] for r in rows]):.3g} "
                     f"| {np.mean([r['final'] for r in rows]):.3g} | "
                     f"{np.mean([r['total_wall_time_s'] for r in rows]):.0f} |")
    lines += ["", f"![time-to-return-{tag}](../benchmarks/results/{figure.name})"]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        replace_section(ROOT / "docs" / "RESULTS.md", f"time-to-return-{tag}", table)


if __name__ == "__main__":
    main()
