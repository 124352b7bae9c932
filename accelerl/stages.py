"""The two-stage Accelerator loop: stage 1 (accelerator RL + BC), switch, stage 2 (fine-tune).

The baselines run through the same loop with a single stage: ``scratch`` trains the
transformer online from step 0, ``accelerator`` trains the accelerator alone. Order of events
at an env step: act -> store -> RL updates -> BC round -> evaluation -> switch -> checkpoint;
a checkpoint therefore captures everything up to and including its step, which is what makes
resume-after-kill reproduce an uninterrupted run exactly.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from accelerl import __version__
from accelerl.algos import Distiller, make_algo
from accelerl.algos.base import frozen_copy
from accelerl.checkpoint import FORMAT_VERSION, atomic_save, atomic_write_text, remove_stale_temporaries
from accelerl.config import RESUMABLE_CHANGES, TrainConfig
from accelerl.envs import get_env_state, make_vector_env, probe_for, set_env_state
from accelerl.errors import CheckpointError, ConfigError, NonFiniteError
from accelerl.evaluation import deterministic, eval_seeds, run_episodes, teacher_seeds, uniform_random
from accelerl.logger import RunLogger
from accelerl.nets import build_accelerator_actor, build_critic, build_transformer_actor, build_transformer_critic
from accelerl.nets.encoders import DetachedEncoder
from accelerl.replay import ReplayBuffer, WindowTracker, as_obs_tensor
from accelerl.switch import SwitchRule


def check_resumable(state: dict, cfg: TrainConfig) -> None:
    """A checkpoint resumes only under the config it was written with (bar RESUMABLE_CHANGES)."""
    saved, mine = dict(state["config"]), cfg.to_dict()
    diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k) and k not in RESUMABLE_CHANGES)
    if diff:
        raise CheckpointError(f"checkpoint was written with a different config (differs in: {', '.join(diff)})")
    if cfg.total_steps < state["env_step"]:
        raise CheckpointError(
            f"--total-steps {cfg.total_steps} is below the checkpoint's step {state['env_step']}; nothing to resume"
        )


def check_replay_fits(cfg: TrainConfig, spec) -> None:
    """Refuse a replay buffer that cannot fit in this machine's memory, before allocating it."""
    row = spec.pixel_dims + 4 * (spec.state_dim + spec.act_dim + 1) + 12  # frame + floats + flags, ep_step
    need = row * max(cfg.buffer_size, cfg.stage2_buffer_size)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.8 * have:
        raise ConfigError(f"a replay of {max(cfg.buffer_size, cfg.stage2_buffer_size)} transitions needs "
                          f"{need / 2**30:.1f} GiB, more than this machine's {have / 2**30:.1f} GiB allows; "
                          "lower --buffer-size")


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
    def __init__(self, cfg: TrainConfig, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.spec = probe_for(cfg)
        self.obs_dim, self.act_dim = self.spec.obs_dim, self.spec.act_dim
        self.context = cfg.window_len
        self.num_envs = cfg.num_envs
        self.envs = make_vector_env(self.spec, cfg.num_envs)
        self.eval_env = make_vector_env(self.spec, cfg.eval_episodes)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)

        dev = self.device
        check_replay_fits(cfg, self.spec)
        # Build order (actors, then critic) fixes the init RNG stream; a CNN actor needs its critic first.
        critic = build_critic(cfg, self.spec).to(dev) if cfg.accelerator_kind == "cnn" else None
        self.accelerator = None if cfg.mode == "scratch" else build_accelerator_actor(cfg, self.spec, critic).to(dev)
        self.transformer = None if cfg.mode == "accelerator" else build_transformer_actor(cfg, self.spec).to(dev)
        # --critic transformer: the transformer's own critic (distilled in stage 1, or from scratch)
        self.transformer_critic = (build_transformer_critic(cfg, self.spec).to(dev)
                                   if cfg.critic == "transformer" else None)
        if cfg.mode == "scratch" and self.transformer_critic is not None:
            critic = self.transformer_critic
        critic = critic if critic is not None else build_critic(cfg, self.spec).to(dev)
        # --transformer-cnn accelerator: in stage 1 the transformer's CNN is a frozen copy of the
        # accelerator's, refreshed every BC round; it trains from the switch on.
        self.student_cnn_frozen = bool(self.spec.pixels) and cfg.mode == "accelerate" and cfg.transformer_cnn == "accelerator"
        if self.student_cnn_frozen:
            self.transformer.encoder.frame.requires_grad_(False)
        actor = self.transformer if cfg.mode == "scratch" else self.accelerator
        self.rl = make_algo(cfg.algo, actor, critic, cfg, act_dim=self.act_dim)
        self.distiller = (Distiller(self.transformer, self.accelerator, cfg.bc_lr, critic, cfg.bc_actor_ascent,
                                    student_critic=self.transformer_critic)
                          if cfg.mode == "accelerate" else None)
        self.buffer = ReplayBuffer(cfg.buffer_size, cfg.num_envs, (self.obs_dim,), self.act_dim, dev,
                                   pixel_dims=self.spec.pixel_dims)
        self.tracker = WindowTracker(cfg.num_envs, (self.obs_dim,), self.context, dev)
        self.switch_rule = SwitchRule(ratio=cfg.switch_ratio, patience=cfg.switch_patience,
                                      plateau=cfg.switch_plateau, cap=cfg.stage1_cap,
                                      min_steps=max(cfg.switch_min_steps, cfg.learning_starts))

        self.stage = {"accelerate": "stage1", "scratch": "scratch", "accelerator": "accelerator"}[cfg.mode]
        self.env_step = 0
        self.eval_round = 0
        self.last_eval_step = -1
        self.update_debt = 0.0
        self.update_start = max(cfg.learning_starts, cfg.batch_size)
        self.switch_step: int | None = None
        self.switch_reason: str | None = None
        self.pending_switch: str | None = None
        self.best_return = -math.inf
        self.last_eval: dict[str, float] = {}
        self.stage_time: dict[str, float] = {}
        self.stage_steps: dict[str, int] = {}
        self.stage_updates: dict[str, int] = {}  # RL gradient updates (critic steps) per stage
        self.bc_updates = 0
        self.wall_time = 0.0
        self._clock = time.perf_counter()
        self.loss_sums: dict[str, torch.Tensor] = {}
        self.loss_counts: dict[str, int] = {}
        self.ep_return = np.zeros(cfg.num_envs)
        self.train_returns: deque[float] = deque(maxlen=20)
        self.logger: RunLogger | None = None
        self.teacher_env = None  # built on first use by --bc-data rollouts
        self.teacher_steps = 0  # env steps spent on teacher rollouts (not training steps)
        self.bc_round = 0
        self.np_rng = np.random.default_rng(cfg.seed)  # DAgger episode assignment
        self.student_driven = np.zeros(cfg.num_envs, dtype=bool)  # envs whose episode the transformer acts
        self.student_steps = 0

    # ------------------------------------------------------------------------------- properties
    @property
    def acting_policy(self) -> str:
        return "transformer" if self.stage in ("stage2", "scratch") else "accelerator"

    def _eval_policies(self) -> dict[str, torch.nn.Module]:
        if self.stage == "stage1":
            return {"accelerator": self.accelerator, "transformer": self.transformer}
        if self.acting_policy == "transformer":
            return {"transformer": self.transformer}
        return {"accelerator": self.accelerator}

    @property
    def rl_context(self) -> int:
        """The window the RL networks read: 1 for an MLP actor and critic, so stage 1 gathers no
        more than a plain MLP agent would."""
        return max(self.rl.actor.encoder.context, self.rl.critic.enc1.context)

    def _due(self, every: int) -> bool:
        return self.env_step // every != (self.env_step - self.num_envs) // every

    # ------------------------------------------------------------------------------------- loop
    def run(self, resume_state: dict | None = None) -> dict:
        cfg = self.cfg
        if resume_state is None:
            obs, _ = self.envs.reset(seed=[cfg.seed * 1000 + i for i in range(cfg.num_envs)])
            self.tracker.reset(as_obs_tensor(obs, self.device))
            resume_step = None
        else:
            self._load_state(resume_state)
            resume_step = self.env_step
        remove_stale_temporaries(self.run_dir / "checkpoints")
        self.logger = RunLogger(self.run_dir, resume_step, cfg.total_steps)
        self._clock = time.perf_counter()
        try:
            if resume_state is None:
                self._evaluate(initial=True)
                self.save()  # a run killed before its first scheduled checkpoint still resumes
                self._clock = time.perf_counter()  # nor is writing it (speed.py times runs without checkpoints)
            while self.env_step < cfg.total_steps:
                self._collect()
                self._train()
                if self.stage == "stage1" and self.env_step >= self.update_start and self._due(cfg.bc_every):
                    self._distill()
                if self._due(cfg.eval_every):
                    self._evaluate()
                if self.stage == "stage1" and (self.pending_switch or self.env_step >= self.switch_rule.cap):
                    self._switch(self.pending_switch or self._cap_reason())
                if self._due(cfg.checkpoint_every):
                    self.save()
            if self.last_eval_step != self.env_step:
                self._evaluate()
            self.save()
            summary = self._write_summary()
            self._plot()
            return summary
        finally:
            self.logger.close()
            self.envs.close()
            self.eval_env.close()
            if self.teacher_env is not None:
                self.teacher_env.close()

    def _cap_reason(self) -> str:
        if self.cfg.auto_switch:
            return f"reached the stage-1 cap (--switch-max-steps {self.switch_rule.cap})"
        return f"reached --stage1-steps {self.switch_rule.cap}"

    def _tick(self) -> None:
        now = time.perf_counter()
        self.stage_time[self.stage] = self.stage_time.get(self.stage, 0.0) + now - self._clock
        self.wall_time += now - self._clock
        self._clock = now

    def _collect(self) -> None:
        window, mask = self.tracker.window()
        if self.stage != "stage2" and self.env_step < self.cfg.learning_starts:
            action = torch.rand(self.num_envs, self.act_dim, generator=self.gen, device=self.device) * 2 - 1
        else:
            with torch.inference_mode():
                action = self.rl.explore(window, mask)
                if self.student_driven.any():
                    # DAgger: the transformer acts in its episodes; the accelerator still labels.
                    student = self.rl.explore(window, mask, actor=self.transformer)
                    driven = torch.as_tensor(self.student_driven, device=self.device)
                    action = torch.where(driven[:, None], student, action)
                self.student_steps += int(self.student_driven.sum())
        next_obs, rew, term, trunc, info = self.envs.step(action.cpu().numpy())
        ended = term | trunc
        # One host->device copy for the step's outputs (observation, reward, flags).
        step_out = torch.as_tensor(np.concatenate([next_obs, np.stack([rew, term, trunc], 1)], 1, dtype=np.float32),
                                   device=self.device)
        next_t, rew_t, term_t, trunc_t = step_out[:, :-3], step_out[:, -3], step_out[:, -2], step_out[:, -1]
        final_obs = None
        if ended.any():
            final_obs = as_obs_tensor(np.stack([info["final_obs"][i] for i in np.flatnonzero(ended)]), self.device)
        self.buffer.add(window[:, -1], action, rew_t, term_t, trunc_t, ended, final_obs)
        self.tracker.step(next_t, ended)
        self.ep_return += rew
        for i in np.flatnonzero(ended):
            self.train_returns.append(float(self.ep_return[i]))
            self.ep_return[i] = 0.0
        if self.cfg.bc_data == "dagger":
            self._assign_drivers(ended)
        self.env_step += self.num_envs
        self.stage_steps[self.stage] = self.stage_steps.get(self.stage, 0) + self.num_envs

    def _assign_drivers(self, ended: np.ndarray) -> None:
        """Decide, per new episode, whether the transformer drives it (DAgger, stage 1 only)."""
        if self.stage != "stage1" or self.env_step < self.cfg.learning_starts:
            self.student_driven[:] = False
            return
        draws = self.np_rng.random(self.num_envs) < self.cfg.dagger_fraction
        self.student_driven = np.where(ended, draws, self.student_driven)

    def _train(self) -> None:
        if self.env_step < self.update_start:
            return
        self.update_debt += self.cfg.updates_per_step * self.num_envs
        while self.update_debt >= 1.0:
            batch = self.buffer.sample(self.cfg.batch_size, self.rl_context, self.gen)
            self._accumulate(self.rl.update(batch))
            self.update_debt -= 1.0
            self.stage_updates[self.stage] = self.stage_updates.get(self.stage, 0) + 1

    def _distill(self) -> None:
        if self.student_cnn_frozen:
            self.transformer.encoder.frame.load_state_dict(self.rl.critic.enc1.frame.state_dict())
        if self.cfg.bc_data == "rollouts":
            self._distill_rollouts()
        else:
            self._distill_replay()

    def _distill_replay(self) -> None:
        """One BC round on replay windows relabelled by the *current* accelerator."""
        for _ in range(self.cfg.bc_updates):
            rows, envs = self.buffer.sample_index(self.cfg.bc_batch_size, self.context, self.gen)
            window, mask = self.buffer.gather(rows, envs, self.context)
            labels = self.distiller.labels(window, mask)
            self._accumulate({"bc_loss": self.distiller.update(window, mask, labels)})
            self.bc_updates += 1
            if self.transformer_critic is not None:
                behaviour = self.buffer.act[rows, envs]
                self._accumulate({"critic_bc_loss": self.distiller.update_critic(window, mask, labels, behaviour)})

    def _distill_rollouts(self) -> None:
        """The paper's BC data: deterministic accelerator episodes in separate envs on fresh
        seeds (the reference code reused one seed), cut into windows; ``bc_epochs`` passes."""
        cfg = self.cfg
        if self.teacher_env is None:
            self.teacher_env = make_vector_env(self.spec, cfg.bc_rollout_episodes)
        seeds = teacher_seeds(cfg.seed, self.bc_round, cfg.bc_rollout_episodes)
        self.bc_round += 1
        collected: list = []
        result = run_episodes(self.teacher_env, deterministic(self.accelerator), seeds, self.context, self.device,
                              windows=collected)
        self.teacher_steps += int(result.lengths.sum())
        windows = torch.cat([w for w, _ in collected])
        masks = torch.cat([m for _, m in collected])
        # Labelled in minibatches: one pass over thousands of pixel windows would hold GBs of activations.
        labels = torch.cat([self.distiller.labels(windows[i:i + cfg.bc_batch_size], masks[i:i + cfg.bc_batch_size])
                            for i in range(0, len(windows), cfg.bc_batch_size)])
        for _ in range(cfg.bc_epochs):
            order = torch.randperm(len(windows), generator=self.gen, device=self.device)
            for start in range(0, len(order), cfg.bc_batch_size):
                idx = order[start:start + cfg.bc_batch_size]
                self._accumulate({"bc_loss": self.distiller.update(windows[idx], masks[idx], labels[idx])})
                self.bc_updates += 1
                if self.transformer_critic is not None:
                    self._accumulate({"critic_bc_loss": self.distiller.update_critic(windows[idx], masks[idx],
                                                                                     labels[idx])})

    def _switch(self, reason: str) -> None:
        """Hand over to the transformer: the critic (the accelerator's with its target, or with
        --critic transformer the distilled one) and SAC's alpha carry over; optimisers restart; a
        fresh small buffer, warm-started with the last stage-1 transitions."""
        self._tick()
        # Losses since the last evaluation belong to stage 1; without this they would be averaged
        # into the first stage-2 row (a stale BC loss next to the transformer's TD losses).
        self._drain_losses()
        self.pending_switch = None
        self.switch_step, self.switch_reason = self.env_step, reason
        self._enter_stage2()
        if self.cfg.stage2_warmstart:
            self._stage1_buffer.copy_recent_into(self.buffer)
        else:
            self.buffer._cur_step.copy_(self._stage1_buffer._cur_step)
        warm = self.buffer.num_transitions
        self.update_start = self.env_step + (0 if warm >= self.cfg.batch_size else self.cfg.batch_size)
        del self._stage1_buffer
        self.logger.log_eval({"env_step": self.env_step, "stage": "stage2", "policy": "transformer",
                              "event": f"switch: {reason}", "wall_time": round(self.wall_time, 2)})
        self.logger.message(f"switched to stage 2 at step {self.env_step}: {reason}")

    def _enter_stage2(self) -> None:
        cfg, old = self.cfg, self.rl
        self.stage = "stage2"
        self.student_driven[:] = False
        if isinstance(getattr(self.accelerator, "encoder", None), DetachedEncoder):
            # The CNN accelerator reads its critic's encoder, which stage 2 goes on training: keep
            # the accelerator as it was at the switch (for `accelerl eval --policy accelerator`).
            self.accelerator.encoder.inner = frozen_copy(self.accelerator.encoder.inner)
        if self.student_cnn_frozen:
            self.transformer.encoder.frame.requires_grad_(True)
        if self.transformer_critic is not None:  # the distilled critic, with a fresh target copy of it
            critic, critic_target = self.transformer_critic, None
        else:
            critic, critic_target = old.critic, old.critic_target
        self.rl = make_algo(cfg.algo, self.transformer, critic, cfg, critic_target=critic_target,
                            log_alpha=getattr(old, "log_alpha", None), act_dim=self.act_dim)
        self._stage1_buffer = self.buffer
        self.buffer = ReplayBuffer(cfg.stage2_buffer_size, cfg.num_envs, (self.obs_dim,), self.act_dim, self.device,
                                   pixel_dims=self.spec.pixel_dims)

    # ------------------------------------------------------------------------------- evaluation
    def _accumulate(self, losses: dict[str, torch.Tensor]) -> None:
        for name, value in losses.items():
            if name in self.loss_sums:
                self.loss_sums[name] += value
            else:
                self.loss_sums[name] = value.clone()
            self.loss_counts[name] = self.loss_counts.get(name, 0) + 1

    def _check_weights(self) -> None:
        for name, sd in self._networks().items():
            for key, value in sd.items():
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise NonFiniteError(
                        f"{name} weight {key} became non-finite before step {self.env_step}; stopped. The last good "
                        f"checkpoint is in {self.run_dir / 'checkpoints'} (try a lower learning rate)"
                    )

    def _check_finite(self) -> None:
        if int(self.buffer.invalid_draws):
            raise RuntimeError("replay sampling drew an unsampleable row; please report this as a bug")
        for name, total in self.loss_sums.items():
            if not torch.isfinite(total):
                raise NonFiniteError(
                    f"{name} became {float(total)} before step {self.env_step}; stopped. The last good checkpoint "
                    f"is in {self.run_dir / 'checkpoints'} (try a lower learning rate)"
                )

    def _drain_losses(self) -> dict[str, float]:
        self._check_finite()
        means = {k: float(v) / self.loss_counts[k] for k, v in self.loss_sums.items()}
        self.loss_sums, self.loss_counts = {}, {}
        return means

    def _evaluate(self, initial: bool = False) -> None:
        self._tick()
        cfg = self.cfg
        seeds = eval_seeds(cfg.seed, self.eval_round, cfg.eval_episodes)
        self.eval_round += 1
        self.last_eval_step = self.env_step
        if initial and self.cfg.mode == "accelerate":
            # The switch rule measures progress from a random policy's return.
            gen = torch.Generator(device=self.device)
            gen.manual_seed(cfg.seed)
            rand = run_episodes(self.eval_env, uniform_random(self.act_dim, gen, self.device), seeds,
                                self.context, self.device)
            self.switch_rule.random_return = rand.mean
            self.logger.log_eval({"env_step": 0, "stage": self.stage, "policy": "random", **rand.as_dict()})
        losses = self._drain_losses()
        sps = self.stage_steps.get(self.stage, 0) / max(self.stage_time.get(self.stage, 0.0), 1e-9)
        results = {}
        for name, actor in self._eval_policies().items():
            res = run_episodes(self.eval_env, deterministic(actor), seeds, self.context, self.device)
            results[name] = res.mean
            self.last_eval[name] = res.mean
            train_ret = float(np.mean(self.train_returns)) if self.train_returns else ""
            self.logger.log_eval({"env_step": self.env_step, "stage": self.stage, "policy": name, **res.as_dict(),
                                  "wall_time": round(self.wall_time, 2), "steps_per_s": round(sps, 1),
                                  "train_return": train_ret, **losses})
        # best.pt follows the policy the run is for: the transformer, or the accelerator alone.
        target = "transformer" if self.transformer is not None else "accelerator"
        if target in results and results[target] > self.best_return and not initial:
            self.best_return = results[target]
            self._save_best()
        if self.stage == "stage1" and cfg.auto_switch and not initial:
            switch, reason = self.switch_rule.observe(self.env_step, results["accelerator"],
                                                      results["transformer"], losses.get("bc_loss"))
            if switch:
                self.pending_switch = reason
        self.logger.progress(self.env_step, self.stage, sps, dict(self.last_eval))
        self._clock = time.perf_counter()  # evaluation time is not training time

    # ------------------------------------------------------------------------------ persistence
    def _networks(self) -> dict[str, dict]:
        nets = {"critic": self.rl.critic.state_dict()}
        if self.accelerator is not None:
            nets["accelerator"] = self.accelerator.state_dict()
        if self.transformer is not None:
            nets["transformer"] = self.transformer.state_dict()
        if self.transformer_critic is not None:
            nets["transformer_critic"] = self.transformer_critic.state_dict()
        return nets

    def _save_best(self) -> None:
        atomic_save({"format_version": FORMAT_VERSION, "config": self.cfg.to_dict(), "env_step": self.env_step,
                     "return": self.best_return, "nets": self._networks()},
                    self.run_dir / "checkpoints" / "best.pt")

    def save(self) -> None:
        """Full state, written atomically; never a state that already holds a NaN loss."""
        self._check_finite()
        self._check_weights()
        self._tick()
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
               "gen": self.gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {
            "format_version": FORMAT_VERSION, "accelerl_version": __version__, "config": self.cfg.to_dict(),
            "stage": self.stage, "env_step": self.env_step, "eval_round": self.eval_round,
            "last_eval_step": self.last_eval_step,
            "update_debt": self.update_debt, "update_start": self.update_start, "switch_step": self.switch_step,
            "switch_reason": self.switch_reason, "pending_switch": self.pending_switch,
            "best_return": self.best_return, "last_eval": self.last_eval, "stage_time": self.stage_time,
            "stage_steps": self.stage_steps, "stage_updates": self.stage_updates, "bc_updates": self.bc_updates,
            "wall_time": self.wall_time, "teacher_steps": self.teacher_steps,
            "bc_round": self.bc_round, "np_rng": self.np_rng.bit_generator.state,
            "student_driven": self.student_driven.copy(), "student_steps": self.student_steps,
            "loss_sums": {k: v.cpu() for k, v in self.loss_sums.items()}, "loss_counts": self.loss_counts,
            "ep_return": self.ep_return.copy(), "train_returns": list(self.train_returns),
            "nets": self._networks(), "rl": self.rl.state_dict(),
            "distiller": self.distiller.state_dict() if self.distiller else None,
            "switch_rule": self.switch_rule.state_dict(), "buffer": self.buffer.state_dict(),
            "tracker": self.tracker.state_dict(), "env_state": get_env_state(self.envs), "rng": rng,
        }
        atomic_save(state, self.run_dir / "checkpoints" / "latest.pt")
        self._plot()

    def _load_state(self, state: dict) -> None:
        check_resumable(state, self.cfg)
        if state["stage"] == "stage2":
            self._enter_stage2()
            del self._stage1_buffer
        for key in ("stage", "env_step", "eval_round", "last_eval_step", "update_debt", "update_start", "switch_step",
                    "switch_reason", "pending_switch", "best_return", "last_eval", "stage_time", "stage_steps",
                    "wall_time", "loss_counts", "teacher_steps", "bc_round", "student_steps"):
            setattr(self, key, state[key])
        self.stage_updates, self.bc_updates = state.get("stage_updates", {}), state.get("bc_updates", 0)
        self.loss_sums = {k: v.to(self.device) for k, v in state["loss_sums"].items()}
        self.ep_return = state["ep_return"].copy()
        self.np_rng.bit_generator.state = state["np_rng"]
        self.student_driven = state["student_driven"].copy()
        self.train_returns = deque(state["train_returns"], maxlen=20)
        nets = state["nets"]
        if self.accelerator is not None:
            self.accelerator.load_state_dict(nets["accelerator"])
        if self.transformer is not None:
            self.transformer.load_state_dict(nets["transformer"])
        if self.transformer_critic is not None:
            self.transformer_critic.load_state_dict(nets["transformer_critic"])
        self.rl.load_state_dict(state["rl"])
        if self.distiller is not None:
            self.distiller.load_state_dict(state["distiller"])
        self.switch_rule.load_state_dict(state["switch_rule"])
        self.buffer.load_state_dict(state["buffer"])
        self.tracker.load_state_dict(state["tracker"])
        set_env_state(self.envs, state["env_state"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["gen"].numel() == self.gen.get_state().numel():
            self.gen.set_state(rng["gen"])
        else:  # resumed on another kind of device: its generator's state cannot carry over
            self.gen.manual_seed(int(torch.randint(2**62, (1,)).item()))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    # ---------------------------------------------------------------------------------- outputs
    def _write_summary(self) -> dict:
        self._tick()
        cfg = self.cfg
        sps = {k: round(self.stage_steps[k] / max(t, 1e-9), 1) for k, t in self.stage_time.items()
               if self.stage_steps.get(k)}
        ups = {k: round(self.stage_updates.get(k, 0) / max(t, 1e-9), 1) for k, t in self.stage_time.items()
               if self.stage_steps.get(k)}
        summary = {
            "accelerl_version": __version__, "env": cfg.env, "obs_mask": cfg.obs_mask, "mode": cfg.mode,
            "algo": cfg.algo, "accelerator": cfg.accelerator_kind if cfg.mode != "scratch" else None,
            "seed": cfg.seed, "device": str(self.device), "env_steps": self.env_step,
            "teacher_steps": self.teacher_steps, "student_steps": self.student_steps,
            "final_return": dict(self.last_eval),
            "best_return": None if self.best_return == -math.inf else self.best_return,
            "switch_step": self.switch_step, "switch_reason": self.switch_reason,
            "wall_time_s": round(self.wall_time, 1),
            "steps_per_s": round(self.env_step / max(self.wall_time, 1e-9), 1), "stage_steps_per_s": sps,
            "stage_updates_per_s": ups, "rl_updates": sum(self.stage_updates.values()), "bc_updates": self.bc_updates,
            "replay_bytes": self.buffer.nbytes,
        }
        atomic_write_text(json.dumps(summary, indent=2) + "\n", self.run_dir / "summary.json")
        return summary

    def _plot(self) -> None:
        from accelerl.plots import plot_run

        try:
            plot_run(self.run_dir)
        except Exception as exc:  # a plot must never kill a training run
            self.logger.message(f"warning: could not draw curves.png: {exc}")
