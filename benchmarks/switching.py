"""When to switch, and which BC data: the auto switch vs fixed switch steps vs BC data sources.

Run by hand (not in CI), e.g. on 2 CPU cores:

    python benchmarks/switching.py --env Hopper-v5 --total-steps 20000 --seeds 0 --write-docs
    python benchmarks/switching.py --env Hopper-v5 --obs-mask velocities --total-steps 20000 --seeds 0

Every configuration shares the env, seeds, evaluation and budget. Reported per run: the final
and best transformer evaluation, the switch step and why, the env steps spent (training steps
plus teacher-rollout steps, which count toward the budget's cost), and wall time. Results go to
``benchmarks/results/switching-<env>.csv``; ``--write-docs`` replaces the matching section of
docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import add_run_args, base_flags, command_line, machine_line, replace_section, run_parallel, write_csv  # noqa: E402


def configs(total: int) -> dict[str, list[str]]:
    """Name -> extra flags. Fixed switch steps at 1/4, 1/2 and 3/4 of the budget."""
    grid = {
        "auto switch, replay BC": ["--stage1-steps", "auto"],
        **{f"fixed switch at {f * total // 4}, replay BC": ["--stage1-steps", str(f * total // 4)] for f in (1, 2, 3)},
        "auto switch, rollouts BC": ["--stage1-steps", "auto", "--bc-data", "rollouts"],
        "auto switch, dagger BC": ["--stage1-steps", "auto", "--bc-data", "dagger"],
    }
    return grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--obs-mask", default=None)
    parser.add_argument("--algo", default="td3")
    add_run_args(parser, total_steps=20_000, eval_episodes=5, out=ROOT / "runs" / "bench-switching")
    args = parser.parse_args(argv)

    base = [*base_flags(args, checkpoint_every=args.total_steps), "--bc-every", "500", "--bc-updates", "20",
            "--buffer-size", "200000", *args.extra.split()]
    if args.obs_mask:
        base += ["--obs-mask", args.obs_mask]
    tag = args.env + (f"-{args.obs_mask}" if args.obs_mask else "")
    runs = {(name, seed): ([*base, *flags, "--seed", str(seed)],
                           Path(args.out) / tag / f"{name.replace(' ', '_').replace(',', '')}__s{seed}")
            for name, flags in configs(args.total_steps).items() for seed in args.seeds}
    run_parallel(list(runs.values()), args.jobs)
    results = []
    for (name, seed), (_, run_dir) in runs.items():
        summary = json.loads((run_dir / "summary.json").read_text())
        results.append({"config": name, "seed": seed, "final": summary["final_return"].get("transformer"),
                        "best": summary["best_return"], "switch_step": summary["switch_step"],
                        "switch_reason": summary["switch_reason"],
                        "env_steps": summary["env_steps"] + summary.get("teacher_steps", 0),
                        "wall_time_s": summary["wall_time_s"]})

    write_csv(Path(args.results_dir) / f"switching-{tag}.csv", results)

    cmd = command_line("switching.py", argv)
    lines = [f"Command: `{cmd}` ({machine_line(args.jobs)}; "
             f"{len(args.seeds)} seed(s); evaluation: {args.eval_episodes} deterministic episodes every "
             f"{args.eval_every} steps).", "",
             "| configuration | final transformer return | best | switch step | env steps incl. teacher | wall time (s) |",
             "|---|---|---|---|---|---|"]
    for name in configs(args.total_steps):
        rows = [r for r in results if r["config"] == name]
        final = np.array([r["final"] for r in rows], dtype=float)
        best = np.array([r["best"] for r in rows], dtype=float)
        sw = ", ".join(str(r["switch_step"]) for r in rows)
        lines.append(f"| {name} | {final.mean():.0f} | {best.mean():.0f} | {sw} | "
                     f"{np.mean([r['env_steps'] for r in rows]):.0f} | {np.mean([r['wall_time_s'] for r in rows]):.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        replace_section(ROOT / "docs" / "RESULTS.md", f"switching-{tag}", table)


if __name__ == "__main__":
    main()
