"""Env steps and updates per second of each stage and mode, and replay memory, next to a plain
single-file MLP TD3/SAC loop.

Run by hand (not in CI):

    python benchmarks/speed.py --env Hopper-v5 --algo td3 --steps 3000 --warmup 1000 --write-docs
    python benchmarks/speed.py --env Hopper-v5 --algo sac --steps 3000 --warmup 1000 --write-docs

All measurements run in this one process, one after another, on the same machine, with
evaluations and checkpoints pushed out of the measured window. Results: a Markdown table on
stdout and ``benchmarks/results/speed-<algo>.csv``; ``--write-docs`` also replaces the matching
section of docs/RESULTS.md.
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
from dataclasses import dataclass
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


# --------------------------------------------------------------------------- plain TD3/SAC (CleanRL style)
@dataclass
class Rates:
    env_steps_per_s: float
    updates_per_s: float  # RL (critic) gradient updates per second of the same wall time
    replay_bytes: int  # allocated replay storage (preallocated, so also its peak)
    transitions: int  # transitions the replay holds at the end


def mlp(i: int, o: int) -> nn.Module:
    return nn.Sequential(nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256),
                         nn.ReLU(), nn.Linear(256, o))


def plain_mlp_agent(env_id: str, algo: str, warmup: int, steps: int, seed: int) -> Rates:
    """A minimal single-file TD3 or SAC with the reference settings (3x256 MLPs, batch 256, one
    critic update per env step; TD3's actor every 2nd, SAC's every step with a tuned alpha), and a
    numpy replay of (s, a, r, s', terminated): the yardstick."""
    torch.manual_seed(seed)
    env = gym.wrappers.RescaleAction(gym.make(env_id), -1.0, 1.0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = mlp(obs_dim, act_dim * (2 if algo == "sac" else 1))
    q1, q2 = mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
    actor_t, q1_t, q2_t = (copy.deepcopy(m).requires_grad_(False) for m in (actor, q1, q2))
    log_alpha = torch.zeros(1, requires_grad=True)
    a_opt = torch.optim.Adam(actor.parameters(), 3e-4)
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], 3e-4)
    alpha_opt = torch.optim.Adam([log_alpha], 3e-4)

    def sac_sample(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = actor(o).chunk(2, -1)
        std = log_std.clamp(-5, 2).exp()
        u = mean + std * torch.randn_like(mean)
        a = torch.tanh(u)
        logp = (torch.distributions.Normal(mean, std).log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1)
        return a, logp

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
                o = torch.as_tensor(obs, dtype=torch.float32)
                if algo == "sac":
                    act = sac_sample(o[None])[0][0].numpy()
                else:
                    act = np.clip(torch.tanh(actor(o)).numpy() + rng.normal(0, 0.1, act_dim), -1, 1)
            act = act.astype(np.float32)
        nxt, rew, term, trunc, _ = env.step(act)
        b_obs[t], b_act[t], b_rew[t], b_next[t], b_term[t] = obs, act, rew, nxt, term
        obs = nxt if not (term or trunc) else env.reset()[0]
        if t < warmup:
            continue
        idx = rng.integers(0, t + 1, 256)
        o, a, r = torch.as_tensor(b_obs[idx]), torch.as_tensor(b_act[idx]), torch.as_tensor(b_rew[idx])
        o2, d = torch.as_tensor(b_next[idx]), torch.as_tensor(b_term[idx])
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            if algo == "sac":
                a2, logp2 = sac_sample(o2)
            else:
                a2 = (torch.tanh(actor_t(o2)) + (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)).clamp(-1, 1)
                logp2 = torch.zeros(len(o2))
            x2 = torch.cat([o2, a2], 1)
            y = r + 0.99 * (1 - d) * (torch.minimum(q1_t(x2), q2_t(x2)).squeeze(1) - alpha * logp2)
        x = torch.cat([o, a], 1)
        loss = F.mse_loss(q1(x).squeeze(1), y) + F.mse_loss(q2(x).squeeze(1), y)
        q_opt.zero_grad()
        loss.backward()
        q_opt.step()
        if algo == "sac":
            a_new, logp = sac_sample(o)
            x_new = torch.cat([o, a_new], 1)
            a_loss = (alpha * logp - torch.minimum(q1(x_new), q2(x_new)).squeeze(1)).mean()
            a_opt.zero_grad()
            a_loss.backward()
            a_opt.step()
            alpha_loss = -(log_alpha * (logp.detach() - act_dim)).mean()
            alpha_opt.zero_grad()
            alpha_loss.backward()
            alpha_opt.step()
        elif t % 2 == 0:
            a_loss = -q1(torch.cat([o, torch.tanh(actor(o))], 1)).mean()
            a_opt.zero_grad()
            a_loss.backward()
            a_opt.step()
        if algo == "sac" or t % 2 == 0:
            with torch.no_grad():
                for m, mt in ((actor, actor_t), (q1, q1_t), (q2, q2_t)):
                    for p, pt in zip(m.parameters(), mt.parameters(), strict=True):
                        pt.lerp_(p, 0.005)
    elapsed = time.perf_counter() - start
    replay = sum(x.nbytes for x in (b_obs, b_next, b_act, b_rew, b_term))
    return Rates(n / elapsed, steps / elapsed, replay, n)


# --------------------------------------------------------------------------- accelerl
def accelerl_rates(env_id: str, mode: str, algo: str, warmup: int, steps: int, seed: int,
                   stage1: int | None, device: str) -> dict[str, Rates]:
    """Run accelerl in-process; rates per stage (evaluations excluded by the trainer). The replay
    is sized to hold the run's steps (at least one batch), so its bytes are those of a full buffer."""
    run_dir = Path(tempfile.mkdtemp(prefix="accelerl-speed-"))
    n = warmup + steps
    try:
        overrides = {"env": env_id, "mode": mode, "algo": algo, "total_steps": n,
                     "learning_starts": warmup, "eval_every": 10**9, "checkpoint_every": 10**9, "eval_episodes": 1,
                     "seed": seed, "device": device, "run_dir": str(run_dir), "buffer_size": max(n, 256)}
        if mode == "accelerate":
            overrides["stage1_steps"] = str(stage1)
        trainer = Trainer(build_config(overrides), run_dir)
        summary = trainer.run()
        held = trainer.buffer.num_transitions  # a row per step plus one per episode end, so < n
        return {stage: Rates(sps, summary["stage_updates_per_s"][stage], summary["replay_bytes"], held)
                for stage, sps in summary["stage_steps_per_s"].items()}
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
    algo = args.algo.upper()
    rows = [(f"plain single-file MLP {algo}", plain_mlp_agent(args.env, args.algo, w, n, args.seed))]
    rows.append(("accelerl --mode accelerator",
                 accelerl_rates(args.env, "accelerator", args.algo, w, n, args.seed, None, args.device)["accelerator"]))
    rows.append(("accelerl --mode accelerate, stage 1",
                 accelerl_rates(args.env, "accelerate", args.algo, w, n, args.seed, w + n, args.device)["stage1"]))
    rows.append(("accelerl --mode accelerate, stage 2",
                 accelerl_rates(args.env, "accelerate", args.algo, w, n, args.seed, w, args.device)["stage2"]))
    rows.append(("accelerl --mode scratch",
                 accelerl_rates(args.env, "scratch", args.algo, w, n, args.seed, None, args.device)["scratch"]))

    base, accel = rows[0][1], rows[1][1]
    probe = gym.make(args.env)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    raw = 4 * (2 * obs_dim + act_dim + 2)  # one float32 (s, a, r, s', terminated) tuple
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, device {args.device}"
    lines = [f"Command: `python benchmarks/speed.py --env {args.env} --algo {args.algo} --steps {n} "
             f"--warmup {w}` ({machine}; 1 seed). Each rate covers the {w} random warm-up steps plus {n} "
             f"learning steps (stage 2: {n} steps after a switch at step {w}); evaluations and checkpoints "
             "are excluded. Updates are RL (critic) gradient steps per second of that same wall time; stage 1 "
             "also runs the transformer's BC updates in it.", "",
             f"| configuration | env steps/s | RL updates/s | steps/s vs plain {algo} | updates/s vs plain {algo} "
             "| vs accelerator mode |", "|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r.env_steps_per_s:.0f} | {r.updates_per_s:.0f} | "
                     f"{r.env_steps_per_s / base.env_steps_per_s:.2f}x | {r.updates_per_s / base.updates_per_s:.2f}x | "
                     f"{r.env_steps_per_s / accel.env_steps_per_s:.2f}x |")
    stage1_cost = accel.env_steps_per_s / rows[2][1].env_steps_per_s
    lines += ["", f"Stage 1 wall time relative to `--mode accelerator` for the same steps: {stage1_cost:.2f}x "
              f"(target: at most 1.3x).", "",
              f"Replay memory: each buffer has room for the run's {w + n} steps (storage is allocated up front, so "
              f"this is also its peak); bytes per transition divide it by the transitions it holds at the end. "
              f"Raw data: one float32 (s, a, r, s', terminated) tuple per transition = "
              f"{raw} B for {args.env} ({obs_dim}-d observations, {act_dim}-d actions). accelerl stores every "
              "observation once (s' is the next row; one extra row per episode end, for the final observation) "
              "whatever the context length, plus truncation and bookkeeping fields.", "",
              "| configuration | replay bytes | transitions held | bytes per transition | vs raw |", "|---|---|---|---|---|"]
    for name, r in (rows[0], rows[1], rows[4]):
        per = r.replay_bytes / r.transitions
        lines.append(f"| {name} | {r.replay_bytes:,} | {r.transitions:,} | {per:.0f} | {per / raw:.2f}x |")
    table = "\n".join(lines)
    print(table)

    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / f"speed-{args.algo}.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["configuration", "env_steps_per_s", "updates_per_s", "replay_bytes", "transitions", "env",
                         "algo", "steps", "warmup", "device"])
        for name, r in rows:
            writer.writerow([name, round(r.env_steps_per_s, 1), round(r.updates_per_s, 1), r.replay_bytes,
                             r.transitions, args.env, args.algo, n, w, args.device])
    if args.write_docs:
        replace_section(ROOT / "docs" / "RESULTS.md", f"speed-{args.algo}", table)


if __name__ == "__main__":
    main()
