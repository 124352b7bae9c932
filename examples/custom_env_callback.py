"""Train a transformer policy on your own gymnasium env from Python, watching it with a callback.

    python examples/custom_env_callback.py                      # about 30 s on 2 CPU cores
    python examples/custom_env_callback.py --total-steps 2000   # a smoke run

The env is a class in this file, handed to accelerl.train as a callable; the callback prints
every evaluation, and stops the run once the transformer is good enough.
"""

from __future__ import annotations

import argparse
from typing import ClassVar

import gymnasium as gym
import numpy as np

import accelerl


class Reacher2D(gym.Env):
    """A point pushed toward a goal it sees only as a relative position: obs (dx, dy), action a
    velocity in [-0.1, 0.1]^2, reward -distance, 50 steps an episode."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
        self.delta = np.zeros(2, np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.delta, self.t = self.np_random.uniform(-1, 1, 2).astype(np.float32), 0
        return self.delta.copy(), {}

    def step(self, action):
        self.delta = self.delta - np.clip(action, -0.1, 0.1).astype(np.float32)
        self.t += 1
        return self.delta.copy(), -float(np.linalg.norm(self.delta)), False, self.t >= 50, {}


class PrintAndStop(accelerl.Callback):
    """Prints each evaluation; once the transformer acts (stage 2), stops the run when its
    return passes ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.stop = accelerl.StopOnReturn(threshold)

    def on_evaluation(self, event: accelerl.Event) -> None:
        returns = ", ".join(f"{k} {v:.1f}" for k, v in event.metrics["returns"].items())
        print(f"step {event.env_step:>6} [{event.stage}] {returns}")
        if event.stage == "stage2":
            self.stop.on_evaluation(event)

    def on_switch(self, event: accelerl.Event) -> None:
        print(f"step {event.env_step:>6} switch: {event.metrics['reason']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total-steps", type=int, default=12_000)
    parser.add_argument("--run-dir", default="runs/example-reacher2d")
    args = parser.parse_args()
    result = accelerl.train(
        run_dir=args.run_dir, env=Reacher2D, preset="quick", total_steps=args.total_steps,
        learning_starts=min(2_000, args.total_steps // 4), eval_every=1_000, switch_max_steps=args.total_steps // 2,
        hidden_size=64, d_model=64, d_ff=128, callbacks=[PrintAndStop(threshold=-5.0)],
    )
    print("stopped early:" if result.stop_reason else "ran to the end:", result.stop_reason or result.summary["env_steps"])
    policy = result.policy()
    print("transformer over 5 episodes:", round(policy.evaluate(episodes=5).mean, 2))


if __name__ == "__main__":
    main()
