"""One validated configuration for a run, plus named presets.

Every field is a CLI flag of `accelerl train` (``stage1_steps`` -> ``--stage1-steps``); the
``help`` metadata is what ``accelerl train --help`` prints. Defaults are the paper's reference
settings (the ``paper`` preset); ``quick`` shrinks the budget so a run finishes in minutes on CPU.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerl.errors import CheckpointError, ConfigError

CONFIG_VERSION = 1
# Values that may differ between a checkpoint's config and the config it is resumed with.
# vector_env: sync and async vector envs step the same envs on the same actions (each env's RNG
# and simulator live in the env, wherever it runs) and checkpoint the same per-env states, so
# switching between them on resume does not change results. A checkpoint whose config predates
# the key reads it as missing, which check_resumable must not count as a difference: listing the
# key here covers that too.
# compile: a compiled update computes the eager one (float rounding aside; tests/test_compile.py)
# on the same optimiser state layout, so a run may resume with or without it.
RESUMABLE_CHANGES = frozenset({"total_steps", "device", "run_dir", "vector_env", "compile"})


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's saved config.json, or a one-line error saying what is wrong with it."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not an accelerl run directory (no config.json)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold an accelerl config")
    return data


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None, bare: str | None = None) -> Any:
    """A config field; ``bare`` is the value of the flag given without one (``--pixels``)."""
    return field(default=default, metadata={"help": help, "choices": choices, "bare": bare})


@dataclass
class TrainConfig:
    # --- environment -------------------------------------------------------------------------
    env: str = _f("Hopper-v5", "Gymnasium env id, e.g. Hopper-v5, Walker2d-v5, Pendulum-v1.")
    obs_mask: str | None = _f(
        None,
        "Partial observability: 'velocities' hides velocities (keeps positions, '-P'), "
        "'positions' hides positions (keeps velocities, '-V'), or explicit indices '0,1,2' to keep.",
    )
    num_envs: int = _f(1, "Parallel training envs (see --vector-env).")
    vector_env: str = _f(
        "sync",
        "How the --num-envs envs run: sync (one after another in the training process, gymnasium SyncVectorEnv) "
        "or async (each env in its own worker process, gymnasium AsyncVectorEnv, forkserver start method where "
        "available, else spawn), so N MuJoCo envs step on N cores; pixel envs render inside the workers. "
        "Same results either way. Not for ManiSkill tasks.",
        ("sync", "async"),
    )
    pixels: str | None = _f(
        None,
        "Image observations of a MuJoCo task, rendered off-screen: 'rgb' (the bare flag) or 'state+rgb' "
        "(proprioceptive state beside each frame). Uses a CNN accelerator.",
        ("rgb", "state+rgb"),
        bare="rgb",
    )
    image_size: int = _f(64, "With --pixels or --obs rgb: frames are IMAGE_SIZE x IMAGE_SIZE RGB, stored once as uint8.")
    obs: str = _f("state", "ManiSkill tasks: state, or rgb (base camera frame + proprioceptive/task state).",
                  ("state", "rgb"))
    control_mode: str = _f("pd_ee_delta_pos", "ManiSkill tasks: the robot's control mode.")
    sim_backend: str = _f(
        "auto",
        "ManiSkill tasks: physx_cuda (one batched env of --num-envs sub-envs on ManiSkill's GPU simulator; "
        "observations, rewards and flags stay torch tensors on the GPU), physx_cpu (--num-envs CPU-simulated "
        "envs side by side; resume is exact), or auto (physx_cuda when the run uses CUDA, else physx_cpu).",
        ("auto", "physx_cpu", "physx_cuda"),
    )
    # --- method ------------------------------------------------------------------------------
    mode: str = _f(
        "accelerate",
        "accelerate: stage 1 (accelerator + BC) then stage 2 (transformer fine-tuned); "
        "scratch: transformer trained online from step 0; accelerator: the accelerator alone.",
        ("accelerate", "scratch", "accelerator"),
    )
    algo: str = _f("td3", "Off-policy algorithm for the accelerator and the transformer.", ("td3", "sac"))
    accelerator: str = _f(
        "auto", "Accelerator network; auto = cnn with --pixels, lstm with --obs-mask, mlp otherwise.",
        ("auto", "mlp", "lstm", "cnn"),
    )
    preset: str = _f("paper", "Named defaults: paper (reference MuJoCo settings), quick (minutes on CPU), or "
                     "maniskill (the reference ManiSkill SAC settings).", ("paper", "quick", "maniskill"))
    critic: str = _f(
        "accelerator",
        "Critic of the transformer's RL: accelerator (stage 2 keeps the accelerator's critic) or transformer "
        "(a transformer critic over the window; in accelerate mode distilled toward the accelerator's critic "
        "during stage 1, then trained by TD in stage 2; in scratch mode trained by TD from step 0).",
        ("accelerator", "transformer"),
    )
    # --- budget ------------------------------------------------------------------------------
    total_steps: int = _f(1_000_000, "Env steps of the whole run (both stages).")
    stage1_steps: str = _f(
        "auto",
        "When to switch to stage 2: an env-step count, or 'auto' (switch rule below, capped by "
        "--switch-max-steps).",
    )
    learning_starts: int = _f(25_000, "Uniform-random env steps before the first update.")
    # --- replay ------------------------------------------------------------------------------
    buffer_size: int | None = _f(
        None, "Replay capacity (transitions) of stage 1, scratch and accelerator modes; default 1M, 100k with images."
    )
    stage2_buffer_size: int = _f(20_000, "Replay capacity of the fresh stage-2 buffer (paper: 10-20k).")
    stage2_warmstart: bool = _f(True, "Fill the stage-2 buffer with the last transitions of stage 1.")
    context: int | None = _f(None, "Context window C of the transformer (and LSTM); default 3, or 10 with --obs-mask.")
    batch_size: int = _f(256, "Minibatch size of RL updates.")
    # --- TD3 / SAC ---------------------------------------------------------------------------
    gamma: float = _f(0.99, "Discount factor.")
    tau: float = _f(0.005, "Polyak rate of target networks.")
    actor_lr: float = _f(3e-4, "Adam learning rate of actors.")
    critic_lr: float = _f(3e-4, "Adam learning rate of critics.")
    updates_per_step: float = _f(1.0, "Gradient updates per env step (update-to-data ratio).")
    policy_delay: int = _f(2, "TD3: critic updates per actor update.")
    exploration_noise: float = _f(0.1, "TD3: std of Gaussian action noise while acting (both stages).")
    policy_noise: float = _f(0.2, "TD3: std of target policy smoothing noise.")
    noise_clip: float = _f(0.5, "TD3: clip of target policy smoothing noise.")
    alpha_lr: float = _f(3e-4, "SAC: learning rate of the entropy temperature.")
    init_alpha: float = _f(1.0, "SAC: initial entropy temperature (tuned automatically).")
    # --- networks ----------------------------------------------------------------------------
    hidden_size: int = _f(256, "Width of MLP/LSTM accelerator layers and of critics.")
    lstm_critic: str = _f(
        "separate",
        "The LSTM critic: separate (one LSTM per Q head; the actor loss encodes the windows again after the critic "
        "step) or shared (both Q heads on one LSTM trunk, and the actor loss reuses the critic pass's features: "
        "about half the LSTM passes per update, but see docs/RESULTS.md: on velocity-masked Pendulum its TD3 actor "
        "saturated at the action bounds in more seeds).",
        ("separate", "shared"),
    )
    hidden_layers: int = _f(3, "Hidden layers of the actor and critic heads (MLP, LSTM, CNN; transformer critic).")
    d_model: int = _f(256, "Transformer width.")
    n_heads: int = _f(2, "Transformer attention heads.")
    n_layers: int = _f(1, "Transformer encoder layers.")
    d_ff: int = _f(512, "Transformer feed-forward width.")
    dropout: float = _f(0.05, "Transformer dropout (off in evaluation and acting).")
    positions: str = _f("sinusoidal", "Transformer position encoding.", ("sinusoidal", "learned"))
    transformer: str = _f(
        "gpt",
        "Transformer blocks: gpt (pre-LN causal self-attention with residual sums, the reference architecture) or "
        "gtrxl (GTrXL, Parisotto et al. 2020: the same blocks joined by GRU-type gates whose bias starts them near "
        "the identity). Used by the actor and by --critic transformer.",
        ("gpt", "gtrxl"),
    )
    frame_stack: int = _f(3, "CNN accelerator: frames it sees (the last FRAME_STACK of the window, each through one CNN).")
    cnn_features: int = _f(50, "Features per frame out of the CNN (then LayerNorm + tanh), before the state is appended.")
    augment: str = _f("shift", "CNN training-time augmentation: shift (random +-4 px shifts, as in DrQ) or none.",
                      ("shift", "none"))
    transformer_cnn: str = _f(
        "scratch",
        "The transformer's per-frame CNN in stage 1: scratch (its own, trained by BC) or accelerator (a frozen copy "
        "of the accelerator's CNN, refreshed every BC round; trainable from the switch on).",
        ("scratch", "accelerator"),
    )
    # --- behaviour cloning (stage 1) ---------------------------------------------------------
    bc_data: str = _f(
        "replay",
        "BC teacher data: replay (windows from the replay buffer relabelled by the current "
        "accelerator), rollouts (deterministic accelerator episodes in separate envs), or dagger "
        "(replay, plus a share of stage-1 episodes acted by the transformer).",
        ("replay", "rollouts", "dagger"),
    )
    dagger_fraction: float = _f(0.25, "With --bc-data dagger: share of stage-1 training episodes acted by the transformer.")
    bc_every: int = _f(1000, "Env steps between BC rounds.")
    bc_updates: int = _f(40, "Gradient steps per BC round (replay data).")
    bc_rollout_episodes: int = _f(2, "Accelerator episodes per BC round (rollouts data; their steps count).")
    bc_epochs: int = _f(1, "Epochs over each round's windows (rollouts data).")
    bc_batch_size: int = _f(256, "Minibatch size of BC.")
    bc_lr: float = _f(3e-4, "Adam learning rate of BC.")
    bc_actor_ascent: float = _f(0.0, "Weight of an extra BC term -Q(W, pi(W))/mean|Q| on the accelerator's critic (0 = off).")
    # --- automatic switch --------------------------------------------------------------------
    switch_ratio: float = _f(0.9, "Auto switch: transformer eval return >= ratio x accelerator's ...")
    switch_patience: int = _f(2, "... for this many consecutive evaluations ...")
    switch_plateau: float = _f(0.05, "... and BC loss improved by less than this fraction over the last evaluations.")
    switch_min_steps: int = _f(0, "Auto switch: never before this many env steps (0 = after learning starts + 2 evals).")
    switch_max_steps: int | None = _f(None, "Auto switch: hard cap on stage-1 steps (default: half of --total-steps).")
    # --- evaluation, logging, checkpoints ----------------------------------------------------
    eval_every: int = _f(5000, "Env steps between deterministic evaluations of both policies.")
    eval_episodes: int = _f(5, "Episodes per evaluation, each on a fresh seed.")
    checkpoint_every: int = _f(10_000, "Env steps between checkpoints (atomic; latest and best kept).")
    seed: int = _f(0, "Seed of everything (envs, networks, sampling).")
    device: str = _f("auto", "auto = cuda when available, else cpu.", ("auto", "cpu", "cuda"))
    compile: str = _f(
        "auto",
        "Compile each update (RL and BC steps) into one graph with torch.compile, captured as CUDA graphs on "
        "CUDA: on, off, or auto (on where CUDA is used; on CPU the speed table shows no gain).",
        ("auto", "on", "off"),
    )
    run_dir: str | None = _f(None, "Run directory (default runs/<env>__<mode>__<algo>__s<seed>__<time>).")

    # ------------------------------------------------------------------------------------------
    @property
    def accelerator_kind(self) -> str:
        if self.accelerator != "auto":
            return self.accelerator
        if self.image_obs:
            return "cnn"
        return "lstm" if self.obs_mask else "mlp"

    @property
    def maniskill(self) -> bool:
        return self.env.startswith("ManiSkill/")

    @property
    def image_obs(self) -> bool:
        """Frames in the observation: --pixels (MuJoCo) or --obs rgb (ManiSkill)."""
        return bool(self.pixels) or (self.maniskill and self.obs == "rgb")

    @property
    def context_len(self) -> int:
        if self.context is not None:
            return self.context
        return 10 if self.obs_mask else 3

    @property
    def window_len(self) -> int:
        """Observations kept per env while acting: enough for the transformer and the accelerator."""
        return max(self.context_len, self.frame_stack if self.accelerator_kind == "cnn" else 1)

    @property
    def auto_switch(self) -> bool:
        return self.mode == "accelerate" and self.stage1_steps == "auto"

    @property
    def stage1_cap(self) -> int:
        """Env step at which stage 1 ends at the latest."""
        if self.mode != "accelerate":
            return 0
        if not self.auto_switch:
            return int(self.stage1_steps)
        return self.switch_max_steps if self.switch_max_steps is not None else self.total_steps // 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps({"version": CONFIG_VERSION, **self.to_dict()}, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        version = data.pop("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(f"config version {version} is not supported (this accelerl writes {CONFIG_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**data)

    # ------------------------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Fail before training on anything that cannot work; returns self for chaining."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices and not (value is None and f.type.endswith("None")):
                raise ConfigError(f"--{_flag(f.name)} must be one of {', '.join(choices)}, got {value!r}")
        positive = ["num_envs", "total_steps", "image_size", "frame_stack", "cnn_features", "stage2_buffer_size",
                    "batch_size",
                    "policy_delay", "hidden_size", "hidden_layers", "d_model", "n_heads", "n_layers", "d_ff",
                    "bc_every", "bc_updates", "bc_rollout_episodes", "bc_epochs", "bc_batch_size",
                    "eval_every", "eval_episodes", "checkpoint_every", "switch_patience"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{_flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.buffer_size is None:
            self.buffer_size = 100_000 if self.image_obs else 1_000_000
        self._validate_pixels()
        if self.maniskill and self.vector_env == "async":
            raise ConfigError("--vector-env async is for gymnasium/MuJoCo tasks; ManiSkill batches its own envs")
        if not self.maniskill and self.sim_backend != "auto":
            raise ConfigError("--sim-backend chooses ManiSkill's simulator; it is for --env ManiSkill/... tasks")
        if self.sim_backend == "physx_cuda" and self.device == "cpu":
            raise ConfigError("--sim-backend physx_cuda runs on the GPU; it needs --device cuda or auto, not cpu")
        if self.context is not None and self.context < 1:
            raise ConfigError(f"--context must be >= 1, got {self.context}")
        if self.learning_starts < 0:
            raise ConfigError(f"--learning-starts must be >= 0, got {self.learning_starts}")
        if not 0 <= self.seed < 2**32:  # numpy's global seeding takes 32-bit seeds
            raise ConfigError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"--d-model ({self.d_model}) must be divisible by --n-heads ({self.n_heads})")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError("--gamma must be in [0, 1] and --tau in (0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.updates_per_step <= 0:
            raise ConfigError(f"--updates-per-step must be > 0, got {self.updates_per_step}")
        for lr in ("actor_lr", "critic_lr", "alpha_lr", "bc_lr", "init_alpha"):
            if getattr(self, lr) <= 0:
                raise ConfigError(f"--{_flag(lr)} must be > 0, got {getattr(self, lr)}")
        if self.stage1_steps != "auto":
            try:
                steps = int(self.stage1_steps)
            except (TypeError, ValueError):
                raise ConfigError(f"--stage1-steps must be an integer or 'auto', got {self.stage1_steps!r}") from None
            if steps < 0:
                raise ConfigError(f"--stage1-steps must be >= 0, got {steps}")
            if self.mode == "accelerate" and steps > self.total_steps:
                raise ConfigError(f"--stage1-steps ({steps}) exceeds --total-steps ({self.total_steps})")
            self.stage1_steps = str(steps)
        if self.switch_max_steps is not None and self.switch_max_steps > self.total_steps:
            raise ConfigError(f"--switch-max-steps ({self.switch_max_steps}) exceeds --total-steps ({self.total_steps})")
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"--buffer-size ({self.buffer_size}) is smaller than --batch-size ({self.batch_size})")
        if self.mode == "accelerate" and self.batch_size > self.stage2_buffer_size:
            raise ConfigError(
                f"--stage2-buffer-size ({self.stage2_buffer_size}) is smaller than --batch-size ({self.batch_size})"
            )
        if self.bc_batch_size > self.buffer_size:
            raise ConfigError(f"--buffer-size ({self.buffer_size}) is smaller than --bc-batch-size ({self.bc_batch_size})")
        for name in ("buffer_size", "stage2_buffer_size"):
            per_env = getattr(self, name) // self.num_envs
            if per_env < 2 * (self.window_len + 1):
                window = (f"--frame-stack {self.frame_stack}" if self.window_len > self.context_len
                          else f"--context {self.context_len}")
                raise ConfigError(
                    f"--{_flag(name)} ({getattr(self, name)}) holds {per_env} steps per env, too few for windows of "
                    f"{window}; use at least {2 * (self.window_len + 1) * self.num_envs}"
                )
        if self.bc_actor_ascent < 0:
            raise ConfigError(f"--bc-actor-ascent must be >= 0, got {self.bc_actor_ascent}")
        if not 0.0 <= self.dagger_fraction <= 1.0:
            raise ConfigError(f"--dagger-fraction must be in [0, 1], got {self.dagger_fraction}")
        if not 0.0 < self.switch_ratio:
            raise ConfigError(f"--switch-ratio must be > 0, got {self.switch_ratio}")
        return self

    def _validate_pixels(self) -> None:
        if self.buffer_size < 1:
            raise ConfigError(f"--buffer-size must be >= 1, got {self.buffer_size}")
        if self.maniskill and self.pixels:
            raise ConfigError("--pixels renders MuJoCo tasks; for ManiSkill camera frames use --obs rgb")
        if not self.maniskill and self.obs != "state":
            raise ConfigError("--obs rgb is for ManiSkill tasks; MuJoCo tasks take --pixels")
        if self.accelerator_kind == "cnn" and not self.image_obs:
            raise ConfigError("--accelerator cnn needs image observations (--pixels, or --obs rgb on ManiSkill)")
        if self.image_obs and self.accelerator_kind != "cnn":
            raise ConfigError(f"image observations need the cnn accelerator, not --accelerator {self.accelerator}")
        if self.transformer_cnn == "accelerator" and not (self.image_obs and self.mode == "accelerate"):
            raise ConfigError("--transformer-cnn accelerator copies the CNN accelerator's encoder into the transformer: "
                              "it needs image observations (--pixels, or --obs rgb on ManiSkill) and --mode accelerate")
        if self.critic == "transformer" and self.mode == "accelerator":
            raise ConfigError("--critic transformer is the transformer's critic; --mode accelerator has no transformer")
        if self.pixels == "rgb" and self.obs_mask:
            raise ConfigError("--obs-mask masks the state, and --pixels rgb has none; use --pixels state+rgb")
        if self.image_obs and self.image_size < 24:
            raise ConfigError(f"--image-size must be >= 24 for the CNN, got {self.image_size}")


def _flag(name: str) -> str:
    return name.replace("_", "-")


PRESETS: dict[str, dict[str, Any]] = {
    # The authors' MuJoCo settings (their public scripts): TD3 with Adam 3e-4, batch 256, gamma 0.99,
    # tau 0.005, 25k random warm-up steps, a 1M replay; a 1-layer transformer, d_model 256, C = 3 (10 masked).
    "paper": {},
    # A demonstration that shows both stages in a few minutes on 2 CPU cores; not for results.
    "quick": {
        "total_steps": 12_000,
        "learning_starts": 2_000,
        "eval_every": 1_500,
        "eval_episodes": 5,
        "checkpoint_every": 3_000,
        "bc_every": 500,
        "bc_updates": 20,
        "switch_max_steps": 8_000,
        "buffer_size": 100_000,
        "stage2_buffer_size": 20_000,
    },
    # The authors' ManiSkill3 state-task SAC settings (their MANISKILL/acc_vec.py): 32 envs, batch
    # 1024, 0.5 updates per env step, gamma 0.8, tau 0.01, 4000 learning starts, a 1M replay (100k
    # with --obs rgb, our default for frames), 256-unit networks. Their control mode is
    # pd_joint_delta_pos; ours stays pd_ee_delta_pos (ManiSkill's own SAC example uses it for PushCube).
    "maniskill": {
        "algo": "sac",
        "num_envs": 32,
        "gamma": 0.8,
        "tau": 0.01,
        "batch_size": 1024,
        "learning_starts": 4_000,
        "updates_per_step": 0.5,
        "hidden_size": 256,
    },
}


def build_config(overrides: dict[str, Any]) -> TrainConfig:
    """Dataclass defaults <- preset <- explicit overrides, then validated."""
    preset = overrides.get("preset") or "paper"
    if preset not in PRESETS:
        raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    values["preset"] = preset
    return TrainConfig(**values).validate()
