"""Env steps and updates per second of each stage and mode, and replay memory, next to a plain
single-file MLP TD3/SAC loop.

Run by hand (not in CI):

    python benchmarks/speed.py --env Hopper-v5 --algo td3 --steps 3000 --warmup 1000 --write-docs
    python benchmarks/speed.py --env Hopper-v5 --algo sac --steps 3000 --warmup 1000 --write-docs
    python benchmarks/speed.py --paths --algo td3 --baseline 1df8ebb --write-docs   # POMDP/pixels/envs/compile

``--paths`` measures the paths the main table leaves out, each row in a fresh process: the
velocity-masked task (LSTM accelerator, C = 10) in both stages, pixels, N envs in async workers,
and --compile on against off, next to the plain MLP loop eager and compiled. ``--baseline REV``
also runs the same rows on the code of git revision REV (a temporary worktree), side by side in
the same run, for before/after ratios.

All measurements run in this one process, one after another, on the same machine, with
evaluations and checkpoints pushed out of the measured window. Results: a Markdown table on
stdout and ``benchmarks/results/speed-<algo>.csv``; ``--write-docs`` also replaces the matching
section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, replace_section

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


def plain_mlp_agent(env_id: str, algo: str, warmup: int, steps: int, seed: int, compiled: bool = False,
                    device: str = "cpu") -> Rates:
    """A minimal single-file TD3 or SAC with the reference settings (3x256 MLPs, batch 256, one
    critic update per env step; TD3's actor every 2nd, SAC's every step with a tuned alpha), and a
    numpy replay of (s, a, r, s', terminated): the yardstick. With ``compiled``, its update is
    one ``torch.compile``d function, as LeanRL compiles its single-file agents."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    env = gym.wrappers.RescaleAction(gym.make(env_id), -1.0, 1.0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = mlp(obs_dim, act_dim * (2 if algo == "sac" else 1)).to(dev)
    q1, q2 = mlp(obs_dim + act_dim, 1).to(dev), mlp(obs_dim + act_dim, 1).to(dev)
    actor_t, q1_t, q2_t = (copy.deepcopy(m).requires_grad_(False) for m in (actor, q1, q2))
    log_alpha = torch.zeros(1, requires_grad=True, device=dev)
    cap = {"capturable": True} if compiled and dev.type == "cuda" else {}
    a_opt = torch.optim.Adam(actor.parameters(), 3e-4, **cap)
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], 3e-4, **cap)
    alpha_opt = torch.optim.Adam([log_alpha], 3e-4, **cap)

    def sac_sample(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = actor(o).chunk(2, -1)
        std = log_std.clamp(-5, 2).exp()
        u = mean + std * torch.randn_like(mean)
        a = torch.tanh(u)
        logp = (torch.distributions.Normal(mean, std).log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1)
        return a, logp

    def critic_update(o, a, r, o2, d):
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            if algo == "sac":
                a2, logp2 = sac_sample(o2)
            else:
                a2 = (torch.tanh(actor_t(o2)) + (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)).clamp(-1, 1)
                logp2 = torch.zeros(len(o2), device=o2.device)
            x2 = torch.cat([o2, a2], 1)
            y = r + 0.99 * (1 - d) * (torch.minimum(q1_t(x2), q2_t(x2)).squeeze(1) - alpha * logp2)
        x = torch.cat([o, a], 1)
        loss = F.mse_loss(q1(x).squeeze(1), y) + F.mse_loss(q2(x).squeeze(1), y)
        q_opt.zero_grad()
        loss.backward()
        q_opt.step()
        return loss.detach()

    def actor_update(o):
        alpha = log_alpha.exp().detach()
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
        else:
            a_loss = -q1(torch.cat([o, torch.tanh(actor(o))], 1)).mean()
            a_opt.zero_grad()
            a_loss.backward()
            a_opt.step()
        with torch.no_grad():
            for m, mt in ((actor, actor_t), (q1, q1_t), (q2, q2_t)):
                torch._foreach_lerp_(list(mt.parameters()), list(m.parameters()), 0.005)
        return a_loss.detach()

    if compiled:
        critic_update, actor_update = torch.compile(critic_update), torch.compile(actor_update)

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
                o = torch.as_tensor(obs, dtype=torch.float32, device=dev)
                if algo == "sac":
                    act = sac_sample(o[None])[0][0].cpu().numpy()
                else:
                    act = np.clip(torch.tanh(actor(o)).cpu().numpy() + rng.normal(0, 0.1, act_dim), -1, 1)
            act = act.astype(np.float32)
        nxt, rew, term, trunc, _ = env.step(act)
        b_obs[t], b_act[t], b_rew[t], b_next[t], b_term[t] = obs, act, rew, nxt, term
        obs = nxt if not (term or trunc) else env.reset()[0]
        if t < warmup:
            continue
        idx = rng.integers(0, t + 1, 256)
        batch = [torch.as_tensor(x[idx], device=dev) for x in (b_obs, b_act, b_rew, b_next, b_term)]
        critic_update(*batch)
        if algo == "sac" or t % 2 == 0:
            actor_update(batch[0])
    elapsed = time.perf_counter() - start
    replay = sum(x.nbytes for x in (b_obs, b_next, b_act, b_rew, b_term))
    return Rates(n / elapsed, steps / elapsed, replay, n)


# --------------------------------------------------------------------------- accelerl
def accelerl_rates(env_id: str, mode: str, algo: str, warmup: int, steps: int, seed: int,
                   stage1: int | None, device: str, **extra) -> dict[str, Rates]:
    """Run accelerl in-process; rates per stage (evaluations excluded by the trainer). The replay
    is sized to hold the run's steps (at least one batch), so its bytes are those of a full buffer.
    ``extra`` holds more train flags (obs_mask, compile, num_envs, ...); a flag the installed
    accelerl does not know is dropped when it has its default value (a baseline revision)."""
    from accelerl.config import TrainConfig, build_config
    from accelerl.stages import Trainer

    run_dir = Path(tempfile.mkdtemp(prefix="accelerl-speed-"))
    n = warmup + steps
    try:
        overrides = {"env": env_id, "mode": mode, "algo": algo, "total_steps": n,
                     "learning_starts": warmup, "eval_every": 10**9, "checkpoint_every": 10**9, "eval_episodes": 1,
                     "seed": seed, "device": device, "run_dir": str(run_dir), "buffer_size": max(n, 256), **extra}
        if mode == "accelerate":
            overrides["stage1_steps"] = str(stage1)
        for key in [k for k in overrides if k not in TrainConfig.__dataclass_fields__]:
            if extra.get(key) not in (None, "off", "sync", "separate", 1):
                raise SystemExit(f"speed.py: this accelerl has no --{key.replace('_', '-')}")
            del overrides[key]
        trainer = Trainer(build_config(overrides), run_dir)
        summary = trainer.run()
        held = trainer.buffer.num_transitions  # a row per step plus one per episode end, so < n
        return {stage: Rates(sps, summary["stage_updates_per_s"][stage], summary["replay_bytes"], held)
                for stage, sps in summary["stage_steps_per_s"].items()}
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def rates_in_subprocess(spec: dict, source: Path | None = None) -> dict[str, Rates]:
    """``accelerl_rates(**spec)`` (or the plain loop, ``spec["plain"]``) in a fresh process, on the
    accelerl at ``source`` (a checkout) or the installed one: every row starts cold (no compile
    cache, no allocator state from the row before) and a baseline revision runs beside this one."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = f"{source}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise RuntimeError(f"speed.py worker {spec} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {stage: Rates(**r) for stage, r in out.items()}


def _worker(spec: dict) -> None:
    spec = dict(spec)
    if spec.pop("plain", False):
        rates = {"plain": plain_mlp_agent(**spec)}
    else:
        rates = accelerl_rates(**spec)
    print(json.dumps({k: dataclasses.asdict(r) for k, r in rates.items()}))


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """The project at git revision ``rev``, in a temporary worktree removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="accelerl-baseline-")) / "src"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)


def paths_table(args) -> str:
    """The paths the main table leaves out, one fresh process per row, with ratios measured in this
    run: compiled against eager, async envs against one env, this code against ``--baseline``."""
    w, n, algo = args.warmup, args.steps, args.algo
    base = {"env_id": args.env, "algo": algo, "seed": args.seed, "device": args.device}
    pomdp = {**base, "obs_mask": "velocities"}
    pixels = {**base, "env_id": args.pixel_env, "pixels": "rgb"}
    pw, pn = args.slow_warmup, args.slow_steps
    compiled = ("off", "on") if args.compile == "both" else (args.compile,)
    rows: list[tuple[str, dict]] = []
    for c in compiled:
        tag = "" if c == "off" else ", --compile on"
        rows += [(f"plain single-file MLP {algo.upper()}{' (torch.compile)' if c == 'on' else ''}",
                  {"plain": True, "env_id": args.env, "algo": algo, "warmup": w, "steps": n, "seed": args.seed,
                   "compiled": c == "on", "device": args.device}),
                 (f"--mode accelerator{tag}", {**base, "mode": "accelerator", "warmup": w, "steps": n, "stage1": None,
                                               "compile": c, "_stage": "accelerator"}),
                 (f"--mode accelerate, stage 2{tag}", {**base, "mode": "accelerate", "warmup": w, "steps": n,
                                                       "stage1": w, "compile": c, "_stage": "stage2"})]
        if c == "on" and args.device == "cpu":
            continue  # on CPU, compiling the LSTM and CNN graphs takes minutes for rows of seconds
        critics = ("separate", "shared") if c == "off" else ("separate",)
        for critic in critics:
            label = "" if critic == "separate" else ", --lstm-critic shared"
            for stage, stage1 in (("stage1", pw + pn), ("stage2", pw)):
                rows.append((f"--obs-mask velocities (LSTM, C = 10){label}, {stage.replace('stage', 'stage ')}{tag}",
                             {**pomdp, "mode": "accelerate", "warmup": pw, "steps": pn, "stage1": stage1, "compile": c,
                              "lstm_critic": critic, "_stage": stage}))
        if args.pixel_env:
            rows.append((f"--pixels {args.image_size} px (CNN), --mode accelerator{tag}",
                         {**pixels, "mode": "accelerator", "warmup": pw, "steps": pn, "stage1": None, "compile": c,
                          "image_size": args.image_size, "_stage": "accelerator"}))
    for num in args.num_envs:
        rows.append((f"--mode accelerator, --num-envs {num} --vector-env async",
                     {**base, "mode": "accelerator", "warmup": w, "steps": n, "stage1": None, "num_envs": num,
                      "vector_env": "async", "_stage": "accelerator"}))

    def measure(spec: dict, source: Path | None) -> Rates | None:
        spec = dict(spec)
        stage = spec.pop("_stage", "plain")
        if source is not None and (spec.get("compile", "off") != "off" or spec.get("vector_env", "sync") != "sync"
                                   or spec.get("lstm_critic", "separate") != "separate" or spec.get("plain")):
            return None  # a baseline without the feature: nothing to compare
        return rates_in_subprocess(spec, source)[stage]

    results = []
    with contextlib.ExitStack() as stack:
        baseline = stack.enter_context(worktree(args.baseline)) if args.baseline else None
        for name, spec in rows:
            mine = measure(spec, None)
            before = measure(spec, baseline) if baseline is not None else None
            results.append((name, mine, before))
            print(f"  {name}: {mine.env_steps_per_s:.1f} steps/s" + (f" (baseline {before.env_steps_per_s:.1f})"
                                                                       if before else ""), file=sys.stderr)
    plain = results[0][1]
    machine = _machine(args.device)
    head = (f"Command: `python benchmarks/speed.py --paths --env {args.env} --algo {algo} --steps {n} --warmup {w} "
            f"--slow-steps {pn} --slow-warmup {pw} --compile {args.compile}"
            + (f" --num-envs {' '.join(map(str, args.num_envs))}" if args.num_envs else "")
            + (f" --baseline {args.baseline}" if args.baseline else "") + f"` ({machine}; 1 seed). Each row ran in its "
            f"own process, one after another. Rates cover the random warm-up steps too ({w}, or {pw} for the "
            f"velocity-masked and pixel rows, then {n} or {pn} learning steps); stage 2 rows switch at the end of the "
            "warm-up. A compiled row's rate includes its compilation"
            + (" (on CPU only the MLP and transformer rows are compiled)." if args.device == "cpu" else "."))
    cols = "| configuration | env steps/s | RL updates/s | steps/s vs plain eager |"
    sep = "|---|---|---|---|"
    if args.baseline:
        cols += f" {args.baseline} steps/s | vs {args.baseline} |"
        sep += "---|---|"
    lines = [head, "", cols, sep]
    for name, r, before in results:
        line = f"| {name} | {r.env_steps_per_s:.1f} | {r.updates_per_s:.1f} | {r.env_steps_per_s / plain.env_steps_per_s:.2f}x |"
        if args.baseline:
            line += (f" {before.env_steps_per_s:.1f} | {r.env_steps_per_s / before.env_steps_per_s:.2f}x |" if before
                     else " | |")
        lines.append(line)
    return "\n".join(lines)


def _machine(device: str) -> str:
    gpu = f", {torch.cuda.get_device_name()}" if device != "cpu" and torch.cuda.is_available() else ""
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, device {device}{gpu}"


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
    paths = parser.add_argument_group("--paths: the velocity-masked, pixel, async-env and compiled paths")
    paths.add_argument("--paths", action="store_true", help="measure those paths instead of the main table")
    paths.add_argument("--compile", default="both", choices=("off", "on", "both"))
    paths.add_argument("--baseline", metavar="REV", help="also run each eager row on git revision REV")
    paths.add_argument("--num-envs", type=int, nargs="*", default=[], help="async env counts for accelerator rows")
    paths.add_argument("--slow-steps", type=int, default=300, help="learning steps of the LSTM and pixel rows")
    paths.add_argument("--slow-warmup", type=int, default=300, help="warm-up steps of the LSTM and pixel rows")
    paths.add_argument("--pixel-env", default="Walker2d-v5", help="task of the pixel row ('' to leave it out)")
    paths.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(json.loads(args.worker))
        return
    if args.paths:
        table = paths_table(args)
        print(table)
        kind = "gpu" if args.device != "cpu" else "cpu"
        if args.write_docs:
            replace_section(ROOT / "docs" / "RESULTS.md", f"speed-paths-{args.algo}-{kind}", table)
        return

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
    machine = _machine(args.device)
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
