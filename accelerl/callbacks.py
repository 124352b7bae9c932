"""Callbacks: watch a run from Python, stop it, or decide the switch yourself.

A callback is any object with some of the hooks below (or a plain function, which gets every
event). Each hook receives an ``Event`` with read-only metrics; to act, it calls
``event.request_stop(reason)`` (the run ends cleanly after this step: a checkpoint and a summary,
and it resumes like any other) or, in stage 1, ``event.request_switch(reason)`` (from
``on_evaluation`` or ``on_step``, stage 2 starts at this very step). Order at an env step, as in
the Trainer: evaluation -> step hooks -> switch -> checkpoint. Callbacks are not saved with the
run: pass them to ``accelerl.resume`` again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any


def crossed(env_step: int, num_envs: int, every: int) -> bool:
    """Whether the vector step that ended at ``env_step`` (``num_envs`` env steps) passed a
    multiple of ``every``: the schedule of evaluations, checkpoints and step hooks alike."""
    return env_step // every != (env_step - num_envs) // every


HOOKS = ("on_start", "on_step", "on_evaluation", "on_switch", "on_checkpoint", "on_end")


@dataclass
class Control:
    """What the callbacks asked for at one event (the Trainer reads it after the hooks ran)."""

    stop: str | None = None
    switch: str | None = None


@dataclass(frozen=True)
class Event:
    """One moment of a run. ``kind`` is the hook's name without ``on_``; ``metrics`` hold what
    the run knows at that moment (documented per kind in the README's "Python API")."""

    kind: str
    env_step: int
    stage: str
    run_dir: Path
    metrics: Mapping[str, Any]
    _control: Control = field(default_factory=Control, repr=False, compare=False)

    def request_stop(self, reason: str = "stopped by a callback") -> None:
        """End the run after this step, with a checkpoint and a summary (whose returns are those
        of the last evaluation)."""
        self._control.stop = self._control.stop or reason

    def request_switch(self, reason: str = "switched by a callback") -> None:
        """Hand over to the transformer at this step (stage 1 of --mode accelerate only; no
        effect elsewhere). Asked in ``on_checkpoint`` it takes effect at the next step."""
        self._control.switch = self._control.switch or reason


class Callback:
    """Base class with no-op hooks. ``every_steps``: call ``on_step`` every that many env steps
    (None: never). ``replaces_switch_rule``: the built-in automatic switch rule stands aside
    (the stage-1 cap still applies)."""

    every_steps: int | None = None
    replaces_switch_rule: bool = False

    def on_start(self, event: Event) -> None: ...
    def on_step(self, event: Event) -> None: ...
    def on_evaluation(self, event: Event) -> None: ...
    def on_switch(self, event: Event) -> None: ...
    def on_checkpoint(self, event: Event) -> None: ...
    def on_end(self, event: Event) -> None: ...


class _FunctionCallback(Callback):
    """A plain function as a callback: it sees every event; step events only if the function
    has an ``every_steps`` attribute."""

    def __init__(self, fn: Callable[[Event], Any], every_steps: int | None = None) -> None:
        self.fn, self.every_steps = fn, every_steps

    def _call(self, event: Event) -> None:
        self.fn(event)

    on_start = on_step = on_evaluation = on_switch = on_checkpoint = on_end = _call


class StopOnReturn(Callback):
    """Stop once an evaluation of ``policy`` (default: the transformer, or the accelerator when
    the run has no transformer) reaches ``threshold``."""

    def __init__(self, threshold: float, policy: str | None = None) -> None:
        self.threshold, self.policy = float(threshold), policy

    def on_evaluation(self, event: Event) -> None:
        returns = event.metrics["returns"]
        name = self.policy or ("transformer" if "transformer" in returns else "accelerator")
        value = returns.get(name)
        if value is not None and value >= self.threshold:
            event.request_stop(f"{name} return {value:.1f} reached {self.threshold:g}")


class SwitchWhen(Callback):
    """A stage-switch criterion of your own: ``rule(event) -> bool | str`` is asked at every
    stage-1 evaluation but step 0's (and every ``every_steps`` env steps, if given); a true answer (or a
    non-empty string, used as the reason) switches at that step. The built-in rule stands aside
    unless ``replace_builtin`` is False; the stage-1 cap (--switch-max-steps or --stage1-steps)
    still applies."""

    def __init__(self, rule: Callable[[Event], bool | str], every_steps: int | None = None,
                 replace_builtin: bool = True) -> None:
        self.rule, self.every_steps, self.replaces_switch_rule = rule, every_steps, replace_builtin

    def _ask(self, event: Event) -> None:
        if event.stage != "stage1" or event.metrics.get("initial"):  # not at step 0's evaluation
            return
        answer = self.rule(event)
        if answer:
            event.request_switch(answer if isinstance(answer, str) else "user switch rule")

    on_evaluation = on_step = _ask


class Callbacks:
    """The run's callbacks, called in order; each event gets a fresh ``Control``."""

    def __init__(self, callbacks: Iterable[Any], run_dir: Path) -> None:
        self.items: list[Any] = []
        for cb in callbacks:
            if not any(callable(getattr(cb, hook, None)) for hook in HOOKS):
                if not callable(cb):
                    raise TypeError(f"a callback needs one of the hooks {', '.join(HOOKS)} or to be a function; "
                                    f"got {cb!r}")
                cb = _FunctionCallback(cb, getattr(cb, "every_steps", None))
            every = getattr(cb, "every_steps", None)
            if every is not None and (not isinstance(every, int) or every < 1):
                raise ValueError(f"{type(cb).__name__}.every_steps must be a positive int or None, got {every!r}")
            self.items.append(cb)
        self.run_dir = run_dir

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def replace_switch_rule(self) -> bool:
        return any(getattr(cb, "replaces_switch_rule", False) for cb in self.items)

    def due_for_step(self, env_step: int, num_envs: int) -> list[Any]:
        """Callbacks whose ``every_steps`` boundary was crossed by the last vector step."""
        return [cb for cb in self.items
                if getattr(cb, "every_steps", None) and crossed(env_step, num_envs, cb.every_steps)]

    def fire(self, kind: str, env_step: int, stage: str, metrics: Mapping[str, Any],
             only: list[Any] | None = None) -> Control:
        control = Control()
        event = Event(kind, env_step, stage, self.run_dir, _freeze(metrics), control)
        for cb in self.items if only is None else only:
            hook = getattr(cb, f"on_{kind}", None)
            if callable(hook):
                hook(event)
        return control


def _freeze(value: Any) -> Any:
    """Read-only copies: a callback must not change what the run logs or decides."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
