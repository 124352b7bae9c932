"""Standalone policies: ``accelerl export RUN --format onnx|torchscript``.

The exported model is the actor with everything a robot-side caller would otherwise have to
re-implement: the observation mask (state tasks take the env's raw observations) and the
rescaling from [-1, 1] to the env's action bounds. It takes the context window and its mask:

    window  float32 [batch, context, obs_dim]   oldest step first, the current observation last
    mask    bool    [batch, context]            True at real steps of the current episode
    action  float32 [batch, act_dim]            in the env's own units

At an episode's first step the window is that observation repeated ``context`` times with only
the last position True; after each step, drop the oldest row, append the new observation and
its True (docs/EXPORT.md has the loop in numpy). A JSON file beside the model records the shapes,
the bounds, the mask indices and the frame stack.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelerl.checkpoint import atomic_write_text
from accelerl.errors import AccelerlError, ConfigError
from accelerl.policy import Policy

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


class DeployablePolicy(nn.Module):
    """(window, mask) -> action in env units, for a trained actor."""

    def __init__(self, policy: Policy, obs_in: int) -> None:
        super().__init__()
        spec = policy.spec
        self.actor = policy.actor
        self.context, self.obs_in = policy.context, obs_in
        keep = list(spec.keep) if spec.keep is not None and obs_in != spec.obs_dim else None
        self.select = keep is not None
        self.register_buffer("keep", torch.tensor(keep or [0], dtype=torch.long))
        low = torch.tensor(spec.action_low, dtype=torch.float32)
        high = torch.tensor(spec.action_high, dtype=torch.float32)
        self.register_buffer("low", low)
        self.register_buffer("scale", (high - low) / 2.0)

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.select:
            window = window.index_select(2, self.keep)
        unit = self.actor.act(window, mask)
        return self.low + (unit + 1.0) * self.scale


class _CheckedInputs(nn.Module):
    """TorchScript shell around the traced policy: a wrong-shaped or wrong-typed input fails with
    a message that says what the model takes (tracing alone would fold shape checks away)."""

    def __init__(self, core: torch.jit.ScriptModule, context: int, obs_in: int) -> None:
        super().__init__()
        self.core, self.context, self.obs_in = core, context, obs_in

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if window.dim() != 3 or window.size(1) != self.context or window.size(2) != self.obs_in:
            raise ValueError(f"window must be float32 [batch, {self.context}, {self.obs_in}], got {list(window.shape)}")
        if mask.dim() != 2 or mask.size(0) != window.size(0) or mask.size(1) != self.context:
            raise ValueError(f"mask must be bool [batch, {self.context}] (batch {window.size(0)}), "
                             f"got {list(mask.shape)}")
        if window.dtype != torch.float32 or mask.dtype != torch.bool:
            raise ValueError("window must be float32 and mask bool")
        return self.core(window, mask)


def raw_obs_dim(policy: Policy) -> int:
    """Features of the observations a caller feeds: the env's raw ones for a masked state task
    (the model applies the mask), else what the policy's networks read."""
    spec = policy.spec
    if spec.keep is None or spec.pixels:
        return spec.obs_dim
    from accelerl.envs import make_single_env

    env = make_single_env(dataclasses.replace(spec, keep=None))
    try:
        return int(env.observation_space.shape[0])
    finally:
        env.close()


def example_inputs(context: int, obs_in: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    window = torch.rand(batch, context, obs_in) * 4.0 - 2.0
    mask = torch.ones(batch, context, dtype=torch.bool)
    mask[0, :-1] = False  # a fresh episode, and (batch > 1) full windows
    return window, mask


def metadata(policy: Policy, which: str, fmt: str, model: DeployablePolicy, run_dir: Path | None) -> dict[str, Any]:
    obs_in = model.obs_in
    spec, cfg = policy.spec, policy.cfg
    return {
        "format": fmt, "policy": which, "run": str(run_dir) if run_dir else None, "env": cfg.env, "algo": cfg.algo,
        "context": policy.context, "obs_dim": obs_in, "act_dim": spec.act_dim,
        "obs_mask": cfg.obs_mask, "mask_indices": list(spec.keep) if spec.keep is not None else None,
        "mask_applied_inside": model.select,
        "action_low": list(spec.action_low), "action_high": list(spec.action_high),
        "pixels": spec.pixels, "image_size": spec.image_size or None,
        "frame_stack": cfg.frame_stack if cfg.accelerator_kind == "cnn" and which == "accelerator" else None,
        "inputs": {"window": {"dtype": "float32", "shape": ["batch", policy.context, obs_in]},
                   "mask": {"dtype": "bool", "shape": ["batch", policy.context]}},
        "outputs": {"action": {"dtype": "float32", "shape": ["batch", spec.act_dim]}},
        "window": "oldest step first, current observation last; at an episode's first step the observation "
                  "repeated with only the last mask entry True; then shift left and append (docs/EXPORT.md)",
    }


def _export_torchscript(model: DeployablePolicy, path: Path, obs_in: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export, but still loads anywhere
        core = torch.jit.trace(model, example_inputs(model.context, obs_in), check_trace=False)
        scripted = torch.jit.script(_CheckedInputs(core, model.context, obs_in))
    tmp = path.with_name(path.name + ".tmp")
    scripted.save(str(tmp))
    tmp.replace(path)


def _export_onnx(model: DeployablePolicy, path: Path, obs_in: int) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError("--format onnx needs the onnx extra: pip install 'accelerl[onnx]'") from None
    batch = torch.export.Dim("batch", min=1, max=4096)
    tmp = path.with_name(path.name + ".tmp.onnx")
    quiet = logging.getLogger("torch.onnx")  # it logs every optional op library it does not find
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, example_inputs(model.context, obs_in), dynamo=True,
                                        input_names=["window", "mask"], output_names=["action"],
                                        dynamic_shapes={"window": {0: batch}, "mask": {0: batch}}, verbose=False)
            program.save(str(tmp), external_data=False)
    finally:
        quiet.setLevel(level)
    tmp.replace(path)


def _run_exported(path: Path, fmt: str, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path))(window, mask)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"window": window.numpy(), "mask": mask.numpy()})[0])


def _check_against_eager(model: DeployablePolicy, path: Path, fmt: str, obs_in: int) -> None:
    """The written file must compute the policy at any batch size: an exporter that silently
    fixed a shape, or changed the function, is caught here rather than on the robot."""
    for batch in (1, 3):
        window, mask = example_inputs(model.context, obs_in, batch)
        with torch.no_grad():
            expected = model(window, mask)
        try:
            got = _run_exported(path, fmt, window, mask)
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise AccelerlError(f"the exported {fmt} model fails at batch {batch}: {str(exc).splitlines()[0]}") from None
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
            path.unlink(missing_ok=True)
            raise AccelerlError(f"the exported {fmt} model disagrees with the policy at batch {batch}")


def export_policy(run_dir: str | Path, fmt: str, which: str | None = None, out: str | Path | None = None,
                  checkpoint: str = "latest") -> Path:
    """Write RUN's policy as a standalone model (+ ``<model>.json``); returns the model's path."""
    from accelerl.config import read_run_config
    from accelerl.policy import load_policy, policy_of

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run_dir = Path(run_dir)
    if which is None:
        which = policy_of(str(read_run_config(run_dir).get("mode")))
    policy = load_policy(run_dir, which, checkpoint, "cpu")
    path = Path(out) if out is not None else run_dir / "export" / f"{which}{FORMATS[fmt]}"
    return export_loaded(policy, which, fmt, path, run_dir)


def export_loaded(policy: Policy, which: str, fmt: str, path: Path, run_dir: Path | None = None) -> Path:
    """Write a loaded ``Policy`` (+ ``<model>.json``), checked against it; returns ``path``."""
    obs_in = raw_obs_dim(policy)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AccelerlError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    model = DeployablePolicy(policy, obs_in).eval().requires_grad_(False)
    (_export_onnx if fmt == "onnx" else _export_torchscript)(model, path, obs_in)
    _check_against_eager(model, path, fmt, obs_in)
    meta = metadata(policy, which, fmt, model, run_dir)
    atomic_write_text(json.dumps(meta, indent=2) + "\n", path.with_name(path.name + ".json"))
    return path
