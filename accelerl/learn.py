"""Learning: replay -> RL updates and behaviour cloning.

The networks and everything that trains them: the TD3/SAC agent (the accelerator's in stage 1
and the baselines, the transformer's from the switch on), the Distiller that clones the
accelerator into the transformer, the update budget, and the running losses that evaluations
log and checkpoints refuse to save when non-finite. It reads replay through the buffer it is
handed and never steps the training envs, so learning can be read without the loop around it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from accelerl.algos import Distiller, make_algo
from accelerl.algos.base import frozen_copy
from accelerl.algos.steps import resolve_compile
from accelerl.config import TrainConfig
from accelerl.envs import make_vector_env
from accelerl.envs.batched import side_env_kind
from accelerl.errors import NonFiniteError
from accelerl.evaluation import deterministic, run_episodes, teacher_seeds
from accelerl.nets import build_accelerator_actor, build_critic, build_transformer_actor, build_transformer_critic
from accelerl.nets.encoders import DetachedEncoder
from accelerl.replay import ReplayBuffer


class Learner:
    """Owns the networks, the RL agent, the Distiller, the update debt and the loss sums."""

    def __init__(self, cfg: TrainConfig, spec, device: torch.device, gen: torch.Generator, run_dir: Path) -> None:
        self.cfg, self.spec, self.device, self.gen = cfg, spec, device, gen
        self.checkpoint_dir = run_dir / "checkpoints"  # named in divergence errors
        self.context = cfg.window_len
        dev = device
        # Build order (actors, then critic) fixes the init RNG stream; a CNN actor needs its critic first.
        critic = build_critic(cfg, spec).to(dev) if cfg.accelerator_kind == "cnn" else None
        self.accelerator = None if cfg.mode == "scratch" else build_accelerator_actor(cfg, spec, critic).to(dev)
        self.transformer = None if cfg.mode == "accelerator" else build_transformer_actor(cfg, spec).to(dev)
        # --critic transformer: the transformer's own critic (distilled in stage 1, or from scratch)
        self.transformer_critic = (build_transformer_critic(cfg, spec).to(dev)
                                   if cfg.critic == "transformer" else None)
        if cfg.mode == "scratch" and self.transformer_critic is not None:
            critic = self.transformer_critic
        critic = critic if critic is not None else build_critic(cfg, spec).to(dev)
        # --transformer-cnn accelerator (image observations in --mode accelerate: TrainConfig.validate):
        # in stage 1 the transformer's CNN is a frozen copy of the accelerator's, refreshed every BC
        # round; it trains from the switch on.
        self.student_cnn_frozen = cfg.transformer_cnn == "accelerator"
        if self.student_cnn_frozen:
            self.transformer.encoder.frame.requires_grad_(False)
        actor = self.transformer if cfg.mode == "scratch" else self.accelerator
        self.rl = make_algo(cfg.algo, actor, critic, cfg, act_dim=spec.act_dim)
        self.distiller = (Distiller(self.transformer, self.accelerator, cfg.bc_lr, critic, cfg.bc_actor_ascent,
                                    student_critic=self.transformer_critic,
                                    compiled=resolve_compile(cfg.compile, device))
                          if cfg.mode == "accelerate" else None)
        self.update_debt = 0.0
        self.update_start = max(cfg.learning_starts, cfg.batch_size)
        self.bc_updates = 0
        self.loss_sums: dict[str, torch.Tensor] = {}
        self.loss_counts: dict[str, int] = {}
        self.teacher_env = None  # built on first use by --bc-data rollouts
        self.teacher_steps = 0  # env steps spent on teacher rollouts (not training steps)
        self.bc_round = 0

    @property
    def rl_context(self) -> int:
        """The window the RL networks read: 1 for an MLP actor and critic, so stage 1 gathers no
        more than a plain MLP agent would."""
        return max(self.rl.actor.encoder.context, self.rl.critic.enc1.context)

    # ----------------------------------------------------------------------------------- acting
    def explore(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The RL agent's exploring action (read at call time: the agent changes at the switch)."""
        return self.rl.explore(window, mask)

    def explore_student(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The transformer's exploring action through the stage-1 agent (DAgger)."""
        return self.rl.explore(window, mask, actor=self.transformer)

    # --------------------------------------------------------------------------------- updates
    def train(self, buffer: ReplayBuffer, env_step: int) -> int:
        """Pay the update debt (``updates_per_step`` per env step); returns the updates made."""
        if env_step < self.update_start:
            return 0
        self.update_debt += self.cfg.updates_per_step * self.cfg.num_envs
        done = 0
        while self.update_debt >= 1.0:
            batch = buffer.sample(self.cfg.batch_size, self.rl_context, self.gen)
            self.accumulate(self.rl.update(batch))
            self.update_debt -= 1.0
            done += 1
        return done

    def distill(self, buffer: ReplayBuffer) -> None:
        """One BC round of the transformer on the current accelerator's actions."""
        if self.student_cnn_frozen:
            self.transformer.encoder.frame.load_state_dict(self.rl.critic.enc1.frame.state_dict())
        if self.cfg.bc_data == "rollouts":
            self._distill_rollouts()
        else:
            self._distill_replay(buffer)

    def _distill_replay(self, buffer: ReplayBuffer) -> None:
        """One BC round on replay windows relabelled by the *current* accelerator."""
        for _ in range(self.cfg.bc_updates):
            rows, envs = buffer.sample_index(self.cfg.bc_batch_size, self.context, self.gen)
            window, mask = buffer.gather(rows, envs, self.context)
            labels = self.distiller.labels(window, mask)
            self.accumulate({"bc_loss": self.distiller.update(window, mask, labels)})
            self.bc_updates += 1
            if self.transformer_critic is not None:
                behaviour = buffer.act[rows, envs]
                self.accumulate({"critic_bc_loss": self.distiller.update_critic(window, mask, labels, behaviour)})

    def _distill_rollouts(self) -> None:
        """The paper's BC data: deterministic accelerator episodes in separate envs on fresh
        seeds (the reference code reused one seed), cut into windows; ``bc_epochs`` passes."""
        cfg = self.cfg
        if self.teacher_env is None:
            self.teacher_env = make_vector_env(self.spec, cfg.bc_rollout_episodes, kind=side_env_kind(cfg, self.device),
                                               device=self.device)
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
                self.accumulate({"bc_loss": self.distiller.update(windows[idx], masks[idx], labels[idx])})
                self.bc_updates += 1
                if self.transformer_critic is not None:
                    self.accumulate({"critic_bc_loss": self.distiller.update_critic(windows[idx], masks[idx],
                                                                                    labels[idx])})

    # ---------------------------------------------------------------------------------- switch
    def enter_stage2(self) -> None:
        """The transformer becomes the actor of a new agent that keeps the critic (the
        accelerator's with its target, or the distilled transformer critic) and SAC's alpha;
        optimisers restart."""
        cfg, old = self.cfg, self.rl
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
                            log_alpha=getattr(old, "log_alpha", None), act_dim=self.spec.act_dim)

    def delay_updates(self, env_step: int, warm: int) -> None:
        """After the switch, updates wait for a batch's worth of transitions in the new buffer."""
        self.update_start = env_step + (0 if warm >= self.cfg.batch_size else self.cfg.batch_size)

    # ---------------------------------------------------------------------------------- losses
    def accumulate(self, losses: dict[str, torch.Tensor]) -> None:
        """Sum losses on the device (no host sync per update); drained at each evaluation."""
        for name, value in losses.items():
            if name in self.loss_sums:
                self.loss_sums[name] += value
            else:
                self.loss_sums[name] = value.clone()
            self.loss_counts[name] = self.loss_counts.get(name, 0) + 1

    def check_finite(self, buffer: ReplayBuffer, env_step: int) -> None:
        if int(buffer.invalid_draws):
            raise RuntimeError("replay sampling drew an unsampleable row; please report this as a bug")
        for name, total in self.loss_sums.items():
            if not torch.isfinite(total):
                raise NonFiniteError(
                    f"{name} became {float(total)} before step {env_step}; stopped. The last good checkpoint "
                    f"is in {self.checkpoint_dir} (try a lower learning rate)"
                )

    def check_weights(self, env_step: int) -> None:
        for name, sd in self.networks().items():
            for key, value in sd.items():
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise NonFiniteError(
                        f"{name} weight {key} became non-finite before step {env_step}; stopped. The last good "
                        f"checkpoint is in {self.checkpoint_dir} (try a lower learning rate)"
                    )

    def drain_losses(self, buffer: ReplayBuffer, env_step: int) -> dict[str, float]:
        """Mean of each loss since the last drain (checked finite first), and reset the sums."""
        self.check_finite(buffer, env_step)
        means = {k: float(v) / self.loss_counts[k] for k, v in self.loss_sums.items()}
        self.loss_sums, self.loss_counts = {}, {}
        return means

    def networks(self) -> dict[str, dict]:
        """The state dicts a checkpoint (and best.pt) holds under ``nets``."""
        nets = {"critic": self.rl.critic.state_dict()}
        if self.accelerator is not None:
            nets["accelerator"] = self.accelerator.state_dict()
        if self.transformer is not None:
            nets["transformer"] = self.transformer.state_dict()
        if self.transformer_critic is not None:
            nets["transformer_critic"] = self.transformer_critic.state_dict()
        return nets

    def close(self) -> None:
        if self.teacher_env is not None:
            self.teacher_env.close()
