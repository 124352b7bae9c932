"""A run's full state as one checkpoint dict, and back.

Everything that decides what happens next goes in (schedule, collection, learning, env states
and every RNG), so a run resumed after ``kill -9`` reproduces the uninterrupted run on CPU. The
key names and contents are the checkpoint format: old checkpoints must go on resuming, so keys
are only ever added (with a default on load), never renamed.
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from typing import TYPE_CHECKING

import numpy as np
import torch

from accelerl import __version__
from accelerl.checkpoint import FORMAT_VERSION
from accelerl.config import RESUMABLE_CHANGES, TrainConfig
from accelerl.errors import CheckpointError

if TYPE_CHECKING:
    from accelerl.stages import Trainer

# Plain values restored by name, per owner.
_SCHEDULE_KEYS = ("stage", "eval_round", "last_eval_step", "switch_step", "switch_reason", "pending_switch",
                  "best_return", "last_eval", "stage_time", "stage_steps", "wall_time")
_COLLECTOR_KEYS = ("env_step", "student_steps")
_LEARNER_KEYS = ("update_debt", "update_start", "loss_counts", "teacher_steps", "bc_round")


def check_resumable(state: dict, cfg: TrainConfig) -> None:
    """A checkpoint resumes only under the config it was written with (bar RESUMABLE_CHANGES). A key
    its config predates reads as that key's default: a newer accelerl adds flags, with defaults
    that keep the old behaviour."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    saved, mine = {**defaults, **state["config"]}, cfg.to_dict()
    diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k) and k not in RESUMABLE_CHANGES)
    if diff:
        raise CheckpointError(f"checkpoint was written with a different config (differs in: {', '.join(diff)})")
    if cfg.total_steps < state["env_step"]:
        raise CheckpointError(
            f"--total-steps {cfg.total_steps} is below the checkpoint's step {state['env_step']}; nothing to resume"
        )


def snapshot(t: Trainer) -> dict:
    """The checkpoint dict of a Trainer (the caller checks finiteness and writes it)."""
    c, lr = t.collector, t.learner
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
           "gen": t.gen.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format_version": FORMAT_VERSION, "accelerl_version": __version__, "config": t.cfg.to_dict(),
        "stage": t.stage, "env_step": c.env_step, "eval_round": t.eval_round,
        "last_eval_step": t.last_eval_step,
        "update_debt": lr.update_debt, "update_start": lr.update_start, "switch_step": t.switch_step,
        "switch_reason": t.switch_reason, "pending_switch": t.pending_switch,
        "best_return": t.best_return, "last_eval": t.last_eval, "stage_time": t.stage_time,
        "stage_steps": t.stage_steps, "stage_updates": t.stage_updates, "bc_updates": lr.bc_updates,
        "wall_time": t.wall_time, "teacher_steps": lr.teacher_steps,
        "bc_round": lr.bc_round, "np_rng": c.np_rng.bit_generator.state,
        "student_driven": c.student_driven.copy(), "student_steps": c.student_steps,
        "loss_sums": {k: v.cpu() for k, v in lr.loss_sums.items()}, "loss_counts": lr.loss_counts,
        "ep_return": c.ep_return.copy(), "train_returns": list(c.train_returns),
        "nets": lr.networks(), "rl": lr.rl.state_dict(),
        "distiller": lr.distiller.state_dict() if lr.distiller else None,
        "switch_rule": t.switch_rule.state_dict(), "buffer": c.buffer.state_dict(),
        "tracker": c.tracker.state_dict(), "env_state": c.env_state(), "rng": rng,
    }


def restore(t: Trainer, state: dict) -> None:
    """Load a checkpoint dict into a freshly built Trainer (of the same config)."""
    check_resumable(state, t.cfg)
    c, lr = t.collector, t.learner
    if state["stage"] == "stage2":
        t._enter_stage2()
        del t._stage1_buffer
    for owner, keys in ((t, _SCHEDULE_KEYS), (c, _COLLECTOR_KEYS), (lr, _LEARNER_KEYS)):
        for key in keys:
            setattr(owner, key, state[key])
    t.stage_updates, lr.bc_updates = state.get("stage_updates", {}), state.get("bc_updates", 0)
    lr.loss_sums = {k: v.to(t.device) for k, v in state["loss_sums"].items()}
    c.ep_return = state["ep_return"].copy()
    c.np_rng.bit_generator.state = state["np_rng"]
    c.student_driven = state["student_driven"].copy()
    c.train_returns = deque(state["train_returns"], maxlen=20)
    nets = state["nets"]
    if lr.accelerator is not None:
        lr.accelerator.load_state_dict(nets["accelerator"])
    if lr.transformer is not None:
        lr.transformer.load_state_dict(nets["transformer"])
    if lr.transformer_critic is not None:
        lr.transformer_critic.load_state_dict(nets["transformer_critic"])
    lr.rl.load_state_dict(state["rl"])
    if lr.distiller is not None:
        lr.distiller.load_state_dict(state["distiller"])
    t.switch_rule.load_state_dict(state["switch_rule"])
    c.buffer.load_state_dict(state["buffer"])
    c.tracker.load_state_dict(state["tracker"])
    c.restore_env_state(state["env_state"])
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["gen"].numel() == t.gen.get_state().numel():
        t.gen.set_state(rng["gen"])
    else:  # resumed on another kind of device: its generator's state cannot carry over
        t.gen.manual_seed(int(torch.randint(2**62, (1,)).item()))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
