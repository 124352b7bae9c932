"""Where a velocity-masked (LSTM accelerator) TD3 update spends its time, against what the CPU can do.

    python benchmarks/lstm_cost.py --write-docs      # the default POMDP sizes: batch 256, C = 10, hidden 256

Profiles real updates of the default velocity-masked Hopper-v5 agent (torch.profiler, the LSTM
kernels' own time), times one nn.LSTM pass over a batch of windows forward and forward+backward,
and one large matrix product (what this machine's BLAS attains). If the update's time is nearly
all LSTM kernels, and those kernels already run near the matrix-product rate, the update cannot
get much faster without doing less LSTM work (fewer passes, a smaller or shared network), which
changes what is learned.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import call_seconds, command_line, cpu_name, replace_section

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md"
# ops that belong to the recurrent layer itself (oneDNN's kernels, or PyTorch's own on CUDA/others)
LSTM_OPS = ("rnn", "lstm")


def best_ms(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls (after one warm-up call), in milliseconds."""
    return 1e3 * min(call_seconds(fn, repeats))


def lstm_pass_flop(batch: int, context: int, hidden: int) -> float:
    """Multiply-adds of one LSTM layer (input size = hidden) over the windows, counted as 2 FLOP."""
    return 2.0 * batch * context * (hidden + hidden) * 4 * hidden


def matmul_gflops(size: int, repeats: int) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2.0 * size**3 / best_ms(lambda: a @ b, repeats) / 1e6


def lstm_times(batch: int, context: int, hidden: int, repeats: int) -> tuple[float, float]:
    """(forward ms, forward+backward ms) of one nn.LSTM pass, as the encoder runs it."""
    lstm = nn.LSTM(hidden, hidden, batch_first=True)
    x = torch.randn(batch, context, hidden, requires_grad=True)

    def forward():
        with torch.no_grad():
            lstm(x)

    def forward_backward():
        out, _ = lstm(x)
        out[:, -1].sum().backward()

    return best_ms(forward, repeats), best_ms(forward_backward, repeats)


def profile_updates(batch: int, context: int, hidden: int, updates: int) -> tuple[float, float]:
    """(ms per update, ms of it in LSTM kernels) for the default velocity-masked TD3 agent."""
    from torch.profiler import ProfilerActivity, profile

    from accelerl.algos import make_algo
    from accelerl.config import build_config
    from accelerl.envs import probe_for
    from accelerl.nets import build_accelerator_actor, build_critic
    from accelerl.replay import Batch

    cfg = build_config({"env": "Hopper-v5", "obs_mask": "velocities", "algo": "td3", "context": context,
                        "hidden_size": hidden, "batch_size": batch, "compile": "off", "device": "cpu"})
    spec = probe_for(cfg)
    torch.manual_seed(0)
    critic = build_critic(cfg, spec)
    agent = make_algo("td3", build_accelerator_actor(cfg, spec, critic), critic, cfg, act_dim=spec.act_dim)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(batch, cfg.window_len + 1, spec.obs_dim, generator=g)
    full = torch.ones(batch, cfg.window_len, dtype=torch.bool)
    data = Batch(obs[:, :-1], full, torch.rand(batch, spec.act_dim, generator=g) * 2 - 1,
                 torch.randn(batch, generator=g), torch.zeros(batch), obs[:, 1:], full)
    for _ in range(3):  # warm-up (allocations, oneDNN primitive caches)
        agent.update(data)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(updates):
            agent.update(data)
        total = time.perf_counter() - start
    lstm_us = sum(e.self_cpu_time_total for e in prof.key_averages() if any(k in e.key.lower() for k in LSTM_OPS))
    return 1e3 * total / updates, lstm_us / 1e3 / updates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--context", type=int, default=10)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--updates", type=int, default=20, help="profiled TD3 updates (each actor-update step included)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--write-docs", action="store_true", help=f"replace the lstm-cost section of {RESULTS}")
    args = parser.parse_args(argv)
    b, c, h = args.batch_size, args.context, args.hidden_size

    peak = matmul_gflops(args.matmul_size, args.repeats)
    fwd_ms, fwd_bwd_ms = lstm_times(b, c, h, args.repeats)
    flop = lstm_pass_flop(b, c, h)
    fwd_rate, fwd_bwd_rate = flop / fwd_ms / 1e6, 3 * flop / fwd_bwd_ms / 1e6  # backward: about 2x forward
    update_ms, lstm_ms = profile_updates(b, c, h, args.updates)

    lines = [
        f"Command: `{command_line('lstm_cost.py', argv)}` ({cpu_name()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; "
        f"batch {b}, C = {c}, hidden {h}).",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| one TD3 update (default velocity-masked Hopper-v5 agent; policy delay 2 averaged in) | {update_ms:.1f} ms |",
        f"| of it in the LSTM's kernels (torch.profiler self time) | {lstm_ms:.1f} ms ({lstm_ms / update_ms:.0%}) |",
        f"| one LSTM pass over the batch of windows: forward / forward+backward | {fwd_ms:.1f} / {fwd_bwd_ms:.1f} ms |",
        f"| its arithmetic: {flop / 1e9:.2f} GFLOP forward, about 3x that with backward | "
        f"{fwd_rate:.0f} / {fwd_bwd_rate:.0f} GFLOP/s |",
        f"| a {args.matmul_size}x{args.matmul_size} float32 matrix product (this machine's BLAS) | {peak:.0f} GFLOP/s |",
        f"| the LSTM's rate as a share of the matrix product's: forward / forward+backward | "
        f"{fwd_rate / peak:.0%} / {fwd_bwd_rate / peak:.0%} |",
    ]
    body = "\n".join(lines)
    print(body)
    if args.write_docs:
        replace_section(RESULTS, "lstm-cost", body)


if __name__ == "__main__":
    main()
