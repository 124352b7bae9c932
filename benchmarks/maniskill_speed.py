"""ManiSkill speed: env steps/s and updates/s of each mode on N batched envs, beside ManiSkill's own SAC.

Run by hand on a GPU (not in CI); every accelerl run uses the ``maniskill`` preset at the given
env count, so on CUDA the envs are one batched env in ManiSkill's GPU simulator:

    python benchmarks/maniskill_speed.py --num-envs 32 --steps 20000 --write-docs
    python benchmarks/maniskill_speed.py --num-envs 32 --steps 20000 \\
        --maniskill-sac path/to/ManiSkill/examples/baselines/sac/sac.py --write-docs

ManiSkill's SAC example is not part of the mani-skill package; give the path of a checkout's
``examples/baselines/sac/sac.py`` to time it on the same GPU with the same env count, batch and
update-to-data ratio (its rate is its total env steps over its wall time, start-up and
evaluation included, so it flatters neither side). Without it, that row says "not run".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import command_line, replace_section, train_run, write_csv  # noqa: E402

MODES = ("accelerator", "accelerate", "scratch")


def accelerl_rows(args: argparse.Namespace) -> list[dict]:
    """One run per mode; the stage-1 and stage-2 rates of ``accelerate`` are separate rows."""
    base = ["--env", args.env, "--preset", "maniskill", "--num-envs", str(args.num_envs), "--total-steps",
            str(args.steps), "--learning-starts", str(args.learning_starts), "--eval-every", str(args.steps),
            "--eval-episodes", str(args.num_envs), "--checkpoint-every", str(args.steps), "--device", args.device,
            *args.extra.split()]
    rows = []
    for mode in MODES:
        flags = [*base, "--mode", mode]
        if mode == "accelerate":
            flags += ["--stage1-steps", str(args.steps // 2)]
        run_dir = Path(args.out) / f"{args.env.replace('/', '-')}-n{args.num_envs}" / mode
        train_run(flags, run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
        for stage, sps in summary["stage_steps_per_s"].items():
            rows.append({"what": f"accelerl --mode {mode}" + (f", {stage}" if mode == "accelerate" else ""),
                         "env_steps_per_s": sps, "updates_per_s": summary["stage_updates_per_s"].get(stage, ""),
                         "device": summary["device"]})
    return rows


def maniskill_sac_row(args: argparse.Namespace) -> dict:
    if not args.maniskill_sac:
        return {"what": "ManiSkill's SAC example", "env_steps_per_s": "not run", "updates_per_s": "", "device": ""}
    task = args.env.split("/", 1)[1]
    cmd = [sys.executable, args.maniskill_sac, f"--env_id={task}", f"--num_envs={args.num_envs}",
           "--utd=0.5", "--batch_size=1024", f"--total_timesteps={args.steps}", f"--learning_starts={args.learning_starts}",
           f"--eval_freq={10 * args.steps}", "--control_mode=pd_ee_delta_pos", "--no-capture-video", "--no-track"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return {"what": "ManiSkill's SAC example (start-up included)", "env_steps_per_s": round(args.steps / wall, 1),
            "updates_per_s": round(0.5 * args.steps / wall, 1), "device": "cuda"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ManiSkill/PushCube-v1")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per run (all envs together)")
    parser.add_argument("--learning-starts", type=int, default=4_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--extra", default="", help="more train flags for every accelerl run, e.g. '--obs rgb'")
    parser.add_argument("--maniskill-sac", default=None, help="path of ManiSkill's examples/baselines/sac/sac.py")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-maniskill-speed"))
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)

    rows = [*accelerl_rows(args), maniskill_sac_row(args)]
    tag = f"{args.env.replace('/', '-')}-n{args.num_envs}" + "".join(f"_{x.lstrip('-')}" for x in args.extra.split()
                                                                     if x.startswith("--"))
    write_csv(Path(args.results_dir) / f"maniskill-speed-{tag}.csv", rows)
    device = rows[0]["device"]
    lines = [f"Command: `{command_line('maniskill_speed.py', argv)}` ({args.steps} env steps per run over "
             f"{args.num_envs} envs, device {device}).", "",
             "| run | env steps/s | updates/s |", "|---|---|---|"]
    lines += [f"| {r['what']} | {r['env_steps_per_s']} | {r['updates_per_s']} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        replace_section(ROOT / "docs" / "RESULTS.md", f"maniskill-speed-{tag}", table)


if __name__ == "__main__":
    main()
