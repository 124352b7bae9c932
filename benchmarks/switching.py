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
import csv
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from speed import replace_section  # noqa: E402


def configs(total: int) -> dict[str, list[str]]:
    """Name -> extra flags. Fixed switch steps at 1/4, 1/2 and 3/4 of the budget."""
    grid = {
        "auto switch, replay BC": ["--stage1-steps", "auto"],
        **{f"fixed switch at {f * total // 4}, replay BC": ["--stage1-steps", str(f * total // 4)] for f in (1, 2, 3)},
        "auto switch, rollouts BC": ["--stage1-steps", "auto", "--bc-data", "rollouts"],
        "auto switch, dagger BC": ["--stage1-steps", "auto", "--bc-data", "dagger"],
    }
    return grid


def run_one(flags: list[str], run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "accelerl.cli", "train", *flags, "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--obs-mask", default=None)
    parser.add_argument("--algo", default="td3")
    parser.add_argument("--total-steps", type=int, default=20_000)
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-switching"))
    parser.add_argument("--extra", default="", help="more train flags for every run, e.g. '--d-model 64'")
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)

    base = ["--env", args.env, "--algo", args.algo, "--total-steps", str(args.total_steps),
            "--learning-starts", str(args.learning_starts), "--eval-every", str(args.eval_every),
            "--eval-episodes", str(args.eval_episodes), "--checkpoint-every", str(args.total_steps),
            "--bc-every", "500", "--bc-updates", "20", "--buffer-size", "200000", *args.extra.split()]
    if args.obs_mask:
        base += ["--obs-mask", args.obs_mask]
    tag = args.env + (f"-{args.obs_mask}" if args.obs_mask else "")
    results = []
    for name, flags in configs(args.total_steps).items():
        for seed in args.seeds:
            slug = name.replace(" ", "_").replace(",", "")
            run_dir = Path(args.out) / tag / f"{slug}__s{seed}"
            if (run_dir / "summary.json").exists():
                summary = json.loads((run_dir / "summary.json").read_text())
            else:
                summary = run_one([*base, *flags, "--seed", str(seed)], run_dir)
            results.append({"config": name, "seed": seed, "final": summary["final_return"].get("transformer"),
                            "best": summary["best_return"], "switch_step": summary["switch_step"],
                            "switch_reason": summary["switch_reason"],
                            "env_steps": summary["env_steps"] + summary.get("teacher_steps", 0),
                            "wall_time_s": summary["wall_time_s"]})
            print(json.dumps(results[-1]), flush=True)

    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / f"switching-{tag}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)

    seeds = " ".join(str(s) for s in args.seeds)
    cmd = (f"python benchmarks/switching.py --env {args.env}" + (f" --obs-mask {args.obs_mask}" if args.obs_mask else "")
           + f" --algo {args.algo} --total-steps {args.total_steps} --seeds {seeds}")
    lines = [f"Command: `{cmd}` ({platform.machine()}, {torch.get_num_threads()} torch threads, CPU; "
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
