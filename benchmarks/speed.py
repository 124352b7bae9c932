"""Env steps per second of each stage and mode, next to a plain single-file MLP TD3 loop.

Run by hand (not in CI):

    python benchmarks/speed.py --env Hopper-v5 --steps 4000

All measurements run in this one process, one after another, on the same machine, with
evaluations and checkpoints pushed out of the measured window. Results: a Markdown table on
stdout and ``benchmarks/results/speed.csv``; ``--write-docs`` also replaces the speed section of
docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from accelerl.config import build_config
from accelerl.stages import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- plain TD3 (CleanRL style)
def plain_td3_steps_per_s(env_id: str, warmup: int, steps: int, seed: int) -> float:
    """A minimal single-file TD3 with the reference settings (3x256 MLPs, batch 256): the yardstick."""
    torch.manual_seed(seed)
    env = gym.wrappers.RescaleAction(gym.make(env_id), -1.0, 1.0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]

    def net(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256),
                             nn.ReLU(), nn.Linear(256, o))

    actor, q1, q2 = net(obs_dim, act_dim), net(obs_dim + act_dim, 1), net(obs_dim + act_dim, 1)
    actor_t, q1_t, q2_t = (copy.deepcopy(m).requires_grad_(False) for m in (actor, q1, q2))
    a_opt = torch.optim.Adam(actor.parameters(), 3e-4)
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], 3e-4)
    n = warmup + steps
    b_obs, b_next = np.zeros((n, obs_dim), np.float32), np.zeros((n, obs_dim), np.float32)
    b_act, b_rew, b_term = np.zeros((n, act_dim), np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for t in range(n):
        if t < warmup:
            act = rng.uniform(-1, 1, act_dim).astype(np.float32)
        else:
            with torch.no_grad():
                act = torch.tanh(actor(torch.as_tensor(obs, dtype=torch.float32))).numpy()
            act = np.clip(act + rng.normal(0, 0.1, act_dim), -1, 1).astype(np.float32)
        nxt, rew, term, trunc, _ = env.step(act)
        b_obs[t], b_act[t], b_rew[t], b_next[t], b_term[t] = obs, act, rew, nxt, term
        obs = nxt if not (term or trunc) else env.reset()[0]
        if t >= warmup:
            idx = rng.integers(0, t + 1, 256)
            o, a, r = torch.as_tensor(b_obs[idx]), torch.as_tensor(b_act[idx]), torch.as_tensor(b_rew[idx])
            o2, d = torch.as_tensor(b_next[idx]), torch.as_tensor(b_term[idx])
            with torch.no_grad():
                a2 = (torch.tanh(actor_t(o2)) + (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)).clamp(-1, 1)
                x2 = torch.cat([o2, a2], 1)
                y = r + 0.99 * (1 - d) * torch.minimum(q1_t(x2), q2_t(x2)).squeeze(1)
            x = torch.cat([o, a], 1)
            loss = F.mse_loss(q1(x).squeeze(1), y) + F.mse_loss(q2(x).squeeze(1), y)
            q_opt.zero_grad()
            loss.backward()
            q_opt.step()
            if t % 2 == 0:
                a_loss = -q1(torch.cat([o, torch.tanh(actor(o))], 1)).mean()
                a_opt.zero_grad()
                a_loss.backward()
                a_opt.step()
                with torch.no_grad():
                    for m, mt in ((actor, actor_t), (q1, q1_t), (q2, q2_t)):
                        for p, pt in zip(m.parameters(), mt.parameters(), strict=True):
                            pt.lerp_(p, 0.005)
    return n / (time.perf_counter() - start)


# --------------------------------------------------------------------------- accelerl
def accelerl_stage_sps(env_id: str, mode: str, algo: str, warmup: int, steps: int, seed: int,
                       stage1: int | None, device: str) -> dict[str, float]:
    """Run accelerl in-process; return steps/s per stage (evaluations excluded by the trainer)."""
    run_dir = Path(tempfile.mkdtemp(prefix="accelerl-speed-"))
    try:
        overrides = {"env": env_id, "mode": mode, "algo": algo, "total_steps": warmup + steps,
                     "learning_starts": warmup, "eval_every": 10**9, "checkpoint_every": 10**9, "eval_episodes": 1,
                     "seed": seed, "device": device, "run_dir": str(run_dir), "buffer_size": 200_000}
        if mode == "accelerate":
            overrides["stage1_steps"] = str(stage1)
        trainer = Trainer(build_config(overrides), run_dir)
        summary = trainer.run()
        return summary["stage_steps_per_s"]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--algo", default="td3", choices=("td3", "sac"))
    parser.add_argument("--steps", type=int, default=4000, help="measured steps per configuration")
    parser.add_argument("--warmup", type=int, default=1000, help="random steps before updates (not measured)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)

    w, n = args.warmup, args.steps
    rows = [("plain single-file MLP TD3", plain_td3_steps_per_s(args.env, w, n, args.seed))]
    sps = accelerl_stage_sps(args.env, "accelerator", args.algo, w, n, args.seed, None, args.device)
    rows.append(("accelerl --mode accelerator", sps["accelerator"]))
    sps = accelerl_stage_sps(args.env, "accelerate", args.algo, w, n, args.seed, w + n, args.device)
    rows.append(("accelerl --mode accelerate, stage 1", sps["stage1"]))
    sps = accelerl_stage_sps(args.env, "accelerate", args.algo, w, n, args.seed, w, args.device)
    rows.append(("accelerl --mode accelerate, stage 2", sps["stage2"]))
    sps = accelerl_stage_sps(args.env, "scratch", args.algo, w, n, args.seed, None, args.device)
    rows.append(("accelerl --mode scratch", sps["scratch"]))

    base = rows[0][1]
    accel = rows[1][1]
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, device {args.device}"
    lines = [f"Command: `python benchmarks/speed.py --env {args.env} --algo {args.algo} --steps {n} "
             f"--warmup {w}` ({machine}; 1 seed). Each rate covers the {w} random warm-up steps plus {n} "
             f"learning steps (stage 2: {n} steps after a switch at step {w}); evaluations and checkpoints "
             "are excluded.", "",
             "| configuration | env steps/s | vs plain TD3 | vs accelerator mode |", "|---|---|---|---|"]
    for name, value in rows:
        lines.append(f"| {name} | {value:.0f} | {value / base:.2f}x | {value / accel:.2f}x |")
    stage1_cost = accel / rows[2][1]
    lines += ["", f"Stage 1 wall time relative to `--mode accelerator` for the same steps: {stage1_cost:.2f}x "
              f"(target: at most 1.3x)."]
    table = "\n".join(lines)
    print(table)

    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "speed.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["configuration", "env_steps_per_s", "env", "algo", "steps", "warmup", "device"])
        for name, value in rows:
            writer.writerow([name, round(value, 1), args.env, args.algo, n, w, args.device])
    if args.write_docs:
        replace_section(ROOT / "docs" / "RESULTS.md", "speed", table)


if __name__ == "__main__":
    main()
