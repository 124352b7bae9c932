"""Per-step acting latency at batch 1 on CPU: the eager policy against its ONNX and TorchScript exports.

    python benchmarks/acting_latency.py [--env Hopper-v5] [--calls 2000] [--write-docs]

Policies at the paper's sizes (untrained weights: latency does not depend on their values), one
torch / onnxruntime thread, as on a robot's control loop. Rows: ``Policy.predict`` (numpy in,
numpy out, the window kept by accelerl), the eager actor on a ready window (torch, inference
mode), the TorchScript export and the ONNX export on onnxruntime, each on the same window.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import call_seconds, command_line, machine_line, replace_section, write_csv

from accelerl.config import build_config
from accelerl.envs import probe_for
from accelerl.export import export_loaded
from accelerl.nets import build_accelerator_actor, build_critic, build_transformer_actor
from accelerl.policy import Policy

POLICIES = {  # name -> (config overrides, which actor)
    "MLP accelerator": ({}, "accelerator"),
    "LSTM accelerator (velocities masked, C = 10)": ({"obs_mask": "velocities"}, "accelerator"),
    "transformer, gpt (C = 3)": ({}, "transformer"),
    "transformer, gtrxl (C = 3)": ({"transformer": "gtrxl"}, "transformer"),
    "transformer, gpt (velocities masked, C = 10)": ({"obs_mask": "velocities"}, "transformer"),
}


def build_policy(env: str, overrides: dict, which: str) -> Policy:
    cfg = build_config({"env": env, "device": "cpu", **overrides})
    spec = probe_for(cfg)
    torch.manual_seed(0)
    actor = build_transformer_actor(cfg, spec) if which == "transformer" else build_accelerator_actor(
        cfg, spec, build_critic(cfg, spec))
    return Policy(actor, cfg, spec, torch.device("cpu"))


def median_us(fn, calls: int) -> float:
    return statistics.median(call_seconds(fn, calls, warmup=min(200, calls))) * 1e6


def time_policy(policy: Policy, paths: dict[str, Path], raw_obs: np.ndarray, calls: int) -> dict[str, float]:
    """Median µs of one acting step of each form, all on the same first-step window."""
    import onnxruntime as ort

    c = policy.context
    window = np.repeat(raw_obs[None, None].astype(np.float32), c, axis=1)
    mask = np.zeros((1, c), bool)
    mask[:, -1] = True
    policy.reset()
    policy.predict(raw_obs)
    net_window, net_mask = policy._tracker.window()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(paths["torchscript"]))
    tw, tm = torch.from_numpy(window), torch.from_numpy(mask)

    def eager_actor():
        with torch.inference_mode():
            policy.actor.act(net_window, net_mask)

    def torchscript():
        with torch.inference_mode():
            scripted(tw, tm)

    return {
        "Policy.predict": median_us(lambda: policy.predict(raw_obs), calls),
        "eager actor": median_us(eager_actor, calls),
        "TorchScript": median_us(torchscript, calls),
        "ONNX Runtime": median_us(lambda: session.run(None, {"window": window, "mask": mask}), calls),
    }


def measure(env: str, calls: int, workdir: Path) -> list[dict]:
    import gymnasium as gym

    rows = []
    raw_obs, _ = gym.make(env).reset(seed=0)
    for name, (overrides, which) in POLICIES.items():
        policy = build_policy(env, overrides, which)
        paths = {fmt: export_loaded(policy, which, fmt, workdir / f"{len(rows)}{ext}")
                 for fmt, ext in (("onnx", ".onnx"), ("torchscript", ".pt"))}
        timings = time_policy(policy, paths, raw_obs, calls)
        rows.append({"policy": name, "context": policy.context, "obs_dim": len(raw_obs),
                     **{k: round(v, 1) for k, v in timings.items()}})
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--results-dir", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--write-docs", action="store_true", help="also rewrite the docs/RESULTS.md section")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args.env, args.calls, Path(tmp))
    out = Path(args.results_dir) / f"acting-latency-{args.env}.csv"
    write_csv(out, rows)
    cols = ["Policy.predict", "eager actor", "TorchScript", "ONNX Runtime"]
    lines = [f"| policy ({args.env}) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {r['policy']} | " + " | ".join(f"{r[c]:.0f}" for c in cols) + " |" for r in rows]
    import onnxruntime

    body = "\n".join([
        "Median µs per acting step at batch 1, one thread (lower is better):", "", *lines, "",
        f"Command: `{command_line('acting_latency.py', argv)}`; machine: {machine_line(1).split(';')[0]}, one thread; "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; untrained weights at the paper's sizes "
        "(d_model 256, hidden 256).",
    ])
    print(body)
    if args.write_docs:
        replace_section(Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md", "acting-latency", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
