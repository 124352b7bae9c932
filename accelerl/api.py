"""Training from Python: ``accelerl.train`` and ``accelerl.resume``, which ``accelerl train`` calls.

Same validation, run folder, checkpoints and resume as the command line; errors are
``accelerl.errors.AccelerlError`` subclasses whose message is the CLI's one line.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerl.config import RESUMABLE_CHANGES, TrainConfig, build_config, read_run_config
from accelerl.envs.custom import adopt, env_name
from accelerl.errors import AccelerlError, CheckpointError, ConfigError

# What a resume may change (the rest comes from the run's saved config).
RESUME_OVERRIDES = tuple(sorted(RESUMABLE_CHANGES - {"run_dir"}))


@dataclass(frozen=True)
class TrainResult:
    """A finished (or stopped) run: its folder, ``summary.json``, config, and its policies."""

    run_dir: Path
    summary: dict[str, Any]
    config: TrainConfig

    @property
    def stop_reason(self) -> str | None:
        """Why a callback stopped the run early, or None if it ran to ``total_steps``."""
        return self.summary.get("stop_reason")

    @property
    def metrics_csv(self) -> Path:
        return self.run_dir / "metrics.csv"

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pt"

    def policy(self, which: str | None = None, checkpoint: str = "latest", device: str = "cpu"):
        """``accelerl.Policy`` of the transformer (default, when the run has one) or the accelerator."""
        from accelerl.policy import load_policy, policy_of

        return load_policy(self.run_dir, which or policy_of(self.config.mode), checkpoint, device)


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def _check_keys(values: dict[str, Any], what: str) -> None:
    unknown = sorted(set(values) - _field_names())
    if unknown:
        raise ConfigError(f"unknown {what}: {', '.join(unknown)} (see accelerl.TrainConfig)")


def make_config(config: TrainConfig | dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Defaults <- preset <- ``config`` <- ``overrides``, validated. A TrainConfig is taken as a
    complete set of values (its preset is not applied again); a dict like command-line flags."""
    _check_keys(overrides, "setting")
    complete = isinstance(config, TrainConfig)
    if complete:
        values = config.to_dict()
    else:
        values = dict(config or {})
        values.pop("version", None)
        _check_keys(values, "config key")
    values.update(overrides)
    if "env" in values:
        values["env"] = env_name(values["env"])
    return TrainConfig(**values).validate() if complete else build_config(values)


def train(config: TrainConfig | dict[str, Any] | None = None, *, run_dir: str | Path,
          callbacks: Iterable[Any] = (), **overrides: Any) -> TrainResult:
    """Train a new run in ``run_dir`` (which must not hold one) and return its result.

    ``config``: a TrainConfig, a dict of settings, or None (the preset's defaults); ``overrides``
    are settings by field name (``env="Hopper-v5", total_steps=20_000``). ``env`` may be a
    registered id, a ``"module:EnvClass"`` entry point, or a callable returning a gymnasium.Env.
    ``callbacks``: see ``accelerl.callbacks``.
    """
    cfg = make_config(config, **overrides)
    run_dir = Path(run_dir)
    if (run_dir / "checkpoints").exists():
        raise AccelerlError(f"{run_dir} already holds a run; continue it with accelerl.resume({str(run_dir)!r}) "
                            "(--resume on the command line) or pick another run_dir")
    cfg.run_dir = str(run_dir)
    return _run(cfg, run_dir, None, callbacks)


def resume(run_dir: str | Path, *, callbacks: Iterable[Any] = (), env: str | Callable | None = None,
           **overrides: Any) -> TrainResult:
    """Continue an interrupted or stopped run from its last checkpoint, under its saved config;
    only ``total_steps``, ``device``, ``vector_env`` and ``compile`` may change. ``env``: the
    callable a ``python:`` run was trained on (no other process can know it)."""
    from accelerl import checkpoint
    from accelerl.run_state import check_resumable

    extra = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if extra:
        raise AccelerlError(f"--resume uses the run's saved config; drop --{extra[0].replace('_', '-')}")
    run_dir = Path(run_dir)
    try:
        saved = read_run_config(run_dir)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot resume: {exc}") from None
    if env is not None:
        adopt(env, str(saved.get("env")))
    cfg = TrainConfig.from_dict({**saved, **overrides}).validate()
    state = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    check_resumable(state, cfg)
    return _run(cfg, run_dir, state, callbacks)


def _run(cfg: TrainConfig, run_dir: Path, state: dict | None, callbacks: Iterable[Any]) -> TrainResult:
    from accelerl import checkpoint
    from accelerl.stages import Trainer

    trainer = Trainer(cfg, run_dir, callbacks)  # checks the env and device before anything is written
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AccelerlError(f"cannot create run directory {run_dir}: {exc.strerror or exc}") from None
    checkpoint.atomic_write_text(cfg.to_json() + "\n", run_dir / "config.json")
    print(f"accelerl: run directory {run_dir}", file=sys.stderr)
    summary = trainer.run(state)
    return TrainResult(run_dir, summary, cfg)
