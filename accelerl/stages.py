"""The schedule of the two-stage Accelerator: stage 1 (accelerator RL + BC), switch, stage 2.

The baselines run through the same loop with a single stage: ``scratch`` trains the
transformer online from step 0, ``accelerator`` trains the accelerator alone. The Trainer only
decides *when*: collection (collect.py) and learning (learn.py) do the work. Order of events at
an env step: act -> store -> RL updates -> BC round -> evaluation -> switch -> checkpoint; a
checkpoint therefore captures everything up to and including its step, which is what makes
resume-after-kill reproduce an uninterrupted run exactly.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accelerl import __version__, run_state
from accelerl.callbacks import Callbacks, Control, crossed
from accelerl.checkpoint import FORMAT_VERSION, atomic_save, atomic_write_text, remove_stale_temporaries
from accelerl.collect import Collector, check_replay_fits
from accelerl.config import TrainConfig
from accelerl.envs import make_vector_env, probe_for
from accelerl.envs.batched import side_env_kind
from accelerl.errors import ConfigError
from accelerl.evaluation import deterministic, eval_seeds, run_episodes, uniform_random
from accelerl.learn import Learner
from accelerl.logger import RunLogger
from accelerl.switch import SwitchRule


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """The run: which stage, when to distil, evaluate, switch and checkpoint, and the summary."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, callbacks: Iterable[Any] = ()) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.callbacks = Callbacks(callbacks, run_dir)
        self.stop_reason: str | None = None  # a callback's request; not checkpointed (a resume goes on)
        self.last_save_step = -1
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.spec = probe_for(cfg, self.device)
        self.num_envs = cfg.num_envs
        check_replay_fits(cfg, self.spec)
        # One sampling generator for both halves: warm-up actions, replay draws and BC shuffles.
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.collector = Collector(cfg, self.spec, self.device, self.gen)
        # Evaluation runs on envs of the training envs' simulator (batched on the GPU), on its own seeds.
        self.eval_env = make_vector_env(self.spec, cfg.eval_episodes, kind=side_env_kind(cfg, self.device),
                                        device=self.device)
        self.learner = Learner(cfg, self.spec, self.device, self.gen, run_dir)
        self.switch_rule = SwitchRule(ratio=cfg.switch_ratio, patience=cfg.switch_patience,
                                      plateau=cfg.switch_plateau, cap=cfg.stage1_cap,
                                      min_steps=max(cfg.switch_min_steps, cfg.learning_starts))

        self.stage = {"accelerate": "stage1", "scratch": "scratch", "accelerator": "accelerator"}[cfg.mode]
        self.eval_round = 0
        self.last_eval_step = -1
        self.switch_step: int | None = None
        self.switch_reason: str | None = None
        self.pending_switch: str | None = None
        self.best_return = -math.inf
        self.last_eval: dict[str, float] = {}
        self.stage_time: dict[str, float] = {}
        self.stage_steps: dict[str, int] = {}
        self.stage_updates: dict[str, int] = {}  # RL gradient updates (critic steps) per stage
        self.wall_time = 0.0
        self._clock = time.perf_counter()
        self.logger: RunLogger | None = None
        self._drawn: int | None = None  # the logger's rows that curves.png last showed

    # ------------------------------------------------------------------------------- properties
    # Read-only views of the two halves, for tests, benchmarks and library users.
    env_step = property(lambda self: self.collector.env_step)
    envs = property(lambda self: self.collector.envs)
    tracker = property(lambda self: self.collector.tracker)
    buffer = property(lambda self: self.collector.buffer)
    rl = property(lambda self: self.learner.rl)
    accelerator = property(lambda self: self.learner.accelerator)
    transformer = property(lambda self: self.learner.transformer)
    act_dim = property(lambda self: self.spec.act_dim)

    @property
    def acting_policy(self) -> str:
        return "transformer" if self.stage in ("stage2", "scratch") else "accelerator"

    def _eval_policies(self) -> dict[str, torch.nn.Module]:
        if self.stage == "stage1":
            return {"accelerator": self.accelerator, "transformer": self.transformer}
        if self.acting_policy == "transformer":
            return {"transformer": self.transformer}
        return {"accelerator": self.accelerator}

    def _due(self, every: int) -> bool:
        return crossed(self.env_step, self.num_envs, every)

    @property
    def _stage_sps(self) -> float:
        """Env steps per second of training time in the current stage."""
        return self.stage_steps.get(self.stage, 0) / max(self.stage_time.get(self.stage, 0.0), 1e-9)

    # ------------------------------------------------------------------------------------- loop
    def run(self, resume_state: dict | None = None) -> dict:
        cfg = self.cfg
        if resume_state is None:
            self.collector.reset()
            resume_step = None
        else:
            self._load_state(resume_state)
            resume_step = self.env_step
        remove_stale_temporaries(self.run_dir / "checkpoints")
        self.logger = RunLogger(self.run_dir, resume_step, cfg.total_steps)
        if self.collector.restarted_episodes:
            self.logger.message(f"resumed at step {resume_step} with a fresh episode in every env: the GPU "
                                "simulator's state is not in the checkpoint")
        self._clock = time.perf_counter()
        try:
            self._hook("start", {"config": cfg.to_dict(), "resumed_from": resume_step})
            if resume_state is None:
                self._evaluate(initial=True)
                self.save()  # a run killed before its first scheduled checkpoint still resumes
                self._clock = time.perf_counter()  # nor is writing it (speed.py times runs without checkpoints)
            while self.env_step < cfg.total_steps and self.stop_reason is None:
                self._collect()
                self._train()
                if self.stage == "stage1" and self.env_step >= self.learner.update_start and self._due(cfg.bc_every):
                    self.learner.distill(self.buffer)
                if self._due(cfg.eval_every):
                    self._evaluate()
                self._step_hooks()
                if self.stage == "stage1" and (self.pending_switch or self.env_step >= self.switch_rule.cap):
                    self._switch(self.pending_switch or self._cap_reason())
                if self._due(cfg.checkpoint_every):
                    self.save()
            if self.stop_reason is not None:
                # No extra evaluation: it would move the evaluation seeds, the switch rule and
                # best.pt, and the resumed run would no longer be the uninterrupted one.
                self.logger.message(f"stopped at step {self.env_step}: {self.stop_reason}")
            elif self.last_eval_step != self.env_step:
                self._evaluate()
            if self.last_save_step != self.env_step:
                self.save()
            summary = self._write_summary()
            self._plot()
            self._hook("end", summary)
            return summary
        finally:
            self.logger.close()
            self.envs.close()
            self.eval_env.close()
            self.learner.close()

    def _collect(self) -> None:
        """Uniform random actions before ``learning_starts`` (bar stage 2); DAgger in stage 1."""
        warmup = self.stage != "stage2" and self.env_step < self.cfg.learning_starts
        self.collector.step(None if warmup else self.learner.explore,
                            self.learner.explore_student if self.stage == "stage1" else None)
        self.stage_steps[self.stage] = self.stage_steps.get(self.stage, 0) + self.num_envs

    def _train(self) -> None:
        updates = self.learner.train(self.buffer, self.env_step)
        if updates:
            self.stage_updates[self.stage] = self.stage_updates.get(self.stage, 0) + updates

    # -------------------------------------------------------------------------------- callbacks
    def _hook(self, kind: str, metrics: dict, only: list | None = None) -> None:
        if not self.callbacks:
            return
        self._apply(self.callbacks.fire(kind, self.env_step, self.stage, metrics, only))

    def _apply(self, control: Control) -> None:
        if control.stop and self.stop_reason is None and self.env_step < self.cfg.total_steps:
            self.stop_reason = control.stop
        if control.switch and self.stage == "stage1" and self.pending_switch is None:
            self.pending_switch = control.switch

    def _step_hooks(self) -> None:
        due = self.callbacks.due_for_step(self.env_step, self.num_envs) if self.callbacks else []
        if due:
            self._hook("step", {"train_return": self.collector.mean_train_return(),
                                "steps_per_s": round(self._stage_sps, 1),
                                "last_eval": dict(self.last_eval)}, only=due)

    def _cap_reason(self) -> str:
        if self.cfg.auto_switch:
            return f"reached the stage-1 cap (--switch-max-steps {self.switch_rule.cap})"
        return f"reached --stage1-steps {self.switch_rule.cap}"

    def _tick(self) -> None:
        now = time.perf_counter()
        self.stage_time[self.stage] = self.stage_time.get(self.stage, 0.0) + now - self._clock
        self.wall_time += now - self._clock
        self._clock = now

    # ----------------------------------------------------------------------------------- switch
    def _switch(self, reason: str) -> None:
        """Hand over to the transformer: the critic (the accelerator's with its target, or with
        --critic transformer the distilled one) and SAC's alpha carry over; optimisers restart; a
        fresh small buffer, warm-started with the last stage-1 transitions."""
        self._tick()
        # Losses since the last evaluation belong to stage 1: the switch row, which closes stage 1,
        # carries them (averaged into the first stage-2 row they would be a stale BC loss next to
        # the transformer's TD losses; dropped, a switch between evaluations would lose them).
        losses = self.learner.drain_losses(self.buffer, self.env_step)
        self.logger.log_eval({"env_step": self.env_step, "stage": "stage1", "policy": "accelerator",
                              "event": f"switch: {reason}", "wall_time": round(self.wall_time, 2), **losses})
        self.pending_switch = None
        self.switch_step, self.switch_reason = self.env_step, reason
        self._enter_stage2()
        self.collector.warm_start(self._stage1_buffer, self.cfg.stage2_warmstart)
        self.learner.delay_updates(self.env_step, self.buffer.num_transitions)
        del self._stage1_buffer
        self.logger.message(f"switched to stage 2 at step {self.env_step}: {reason}")
        self._hook("switch", {"reason": reason, "stage1_losses": losses})

    def _enter_stage2(self) -> None:
        """The stage-2 agent and buffer; the stage-1 buffer stays in ``_stage1_buffer`` for the warm start."""
        self.stage = "stage2"
        self.collector.student_driven[:] = False
        self.learner.enter_stage2()
        self._stage1_buffer = self.collector.swap_buffer(self.cfg.stage2_buffer_size)

    # ------------------------------------------------------------------------------- evaluation
    def _evaluate(self, initial: bool = False) -> None:
        self._tick()
        cfg = self.cfg
        seeds = eval_seeds(cfg.seed, self.eval_round, cfg.eval_episodes)
        random_return = None
        self.eval_round += 1
        self.last_eval_step = self.env_step
        if initial and self.cfg.mode == "accelerate":
            # The switch rule measures progress from a random policy's return.
            gen = torch.Generator(device=self.device)
            gen.manual_seed(cfg.seed)
            rand = run_episodes(self.eval_env, uniform_random(self.act_dim, gen, self.device), seeds,
                                cfg.window_len, self.device)
            random_return = rand.mean
            self.switch_rule.random_return = rand.mean
            self.logger.log_eval({"env_step": 0, "stage": self.stage, "policy": "random", **rand.as_dict()})
        losses = self.learner.drain_losses(self.buffer, self.env_step)
        sps = self._stage_sps
        results = {}
        for name, actor in self._eval_policies().items():
            res = run_episodes(self.eval_env, deterministic(actor), seeds, cfg.window_len, self.device)
            results[name] = res.mean
            self.last_eval[name] = res.mean
            self.logger.log_eval({"env_step": self.env_step, "stage": self.stage, "policy": name, **res.as_dict(),
                                  "wall_time": round(self.wall_time, 2), "steps_per_s": round(sps, 1),
                                  "train_return": self.collector.mean_train_return(), **losses})
        # best.pt follows the policy the run is for: the transformer, or the accelerator alone.
        target = "transformer" if self.transformer is not None else "accelerator"
        if target in results and results[target] > self.best_return and not initial:
            self.best_return = results[target]
            self._save_best()
        builtin_rule = cfg.auto_switch and not self.callbacks.replace_switch_rule
        if self.stage == "stage1" and builtin_rule and not initial:
            switch, reason = self.switch_rule.observe(self.env_step, results["accelerator"],
                                                      results["transformer"], losses.get("bc_loss"))
            if switch:
                self.pending_switch = reason
        self.logger.progress(self.env_step, self.stage, sps, dict(self.last_eval))
        self._hook("evaluation", {"returns": results, "initial": initial, "random_return": random_return,
                                  "train_return": self.collector.mean_train_return(), "steps_per_s": round(sps, 1),
                                  "wall_time": round(self.wall_time, 2), **losses})
        self._clock = time.perf_counter()  # evaluation time is not training time

    # ------------------------------------------------------------------------------ persistence
    def _save_best(self) -> None:
        atomic_save({"format_version": FORMAT_VERSION, "config": self.cfg.to_dict(), "env_step": self.env_step,
                     "return": self.best_return, "nets": self.learner.networks()},
                    self.run_dir / "checkpoints" / "best.pt")

    def save(self) -> None:
        """Full state (run_state.py), written atomically; never a state that already holds a NaN loss."""
        self.learner.check_finite(self.buffer, self.env_step)
        self.learner.check_weights(self.env_step)
        self._tick()
        path = self.run_dir / "checkpoints" / "latest.pt"
        atomic_save(run_state.snapshot(self), path)
        self.last_save_step = self.env_step
        self._plot()
        self._hook("checkpoint", {"path": str(path)})

    def _load_state(self, state: dict) -> None:
        run_state.restore(self, state)

    # ---------------------------------------------------------------------------------- outputs
    def _write_summary(self) -> dict:
        self._tick()
        cfg, lr = self.cfg, self.learner
        sps = {k: round(self.stage_steps[k] / max(t, 1e-9), 1) for k, t in self.stage_time.items()
               if self.stage_steps.get(k)}
        ups = {k: round(self.stage_updates.get(k, 0) / max(t, 1e-9), 1) for k, t in self.stage_time.items()
               if self.stage_steps.get(k)}
        summary = {
            "accelerl_version": __version__, "env": cfg.env, "obs_mask": cfg.obs_mask, "mode": cfg.mode,
            "algo": cfg.algo, "accelerator": cfg.accelerator_kind if cfg.mode != "scratch" else None,
            "seed": cfg.seed, "device": str(self.device), "env_steps": self.env_step,
            "teacher_steps": lr.teacher_steps, "student_steps": self.collector.student_steps,
            "final_return": dict(self.last_eval),
            "best_return": None if self.best_return == -math.inf else self.best_return,
            "switch_step": self.switch_step, "switch_reason": self.switch_reason, "stop_reason": self.stop_reason,
            "wall_time_s": round(self.wall_time, 1),
            "steps_per_s": round(self.env_step / max(self.wall_time, 1e-9), 1), "stage_steps_per_s": sps,
            "stage_updates_per_s": ups, "rl_updates": sum(self.stage_updates.values()), "bc_updates": lr.bc_updates,
            "replay_bytes": self.buffer.nbytes,
        }
        atomic_write_text(json.dumps(summary, indent=2) + "\n", self.run_dir / "summary.json")
        return summary

    def _plot(self) -> None:
        """Redraw curves.png if metrics.csv gained rows since it was drawn (a drawing costs about
        half a second on 2 cores, and most checkpoints and the run's end bring no new row)."""
        from accelerl.plots import plot_run

        if self._drawn == self.logger.rows_written:
            return
        self._drawn = self.logger.rows_written
        try:
            plot_run(self.run_dir)
        except Exception as exc:  # a plot must never kill a training run
            self.logger.message(f"warning: could not draw curves.png: {exc}")
