"""Any gymnasium env: a registered id, a ``"module:EnvClass"`` / ``"module:factory"`` entry point,
or (from Python) a callable returning a ``gymnasium.Env``.

Ids and entry points are strings every process can resolve again, so runs on them resume,
sweep and step in async workers. A callable lives only in the process that was handed it: it
is kept under a ``python:<name>`` id, and resuming such a run needs the same callable again
(``accelerl.resume(run_dir, env=make_env)``). A callable that has an importable entry point (a
module-level class or function of an importable module) is stored as that entry point instead.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec as GymEnvSpec

from accelerl.errors import ConfigError

PYTHON_PREFIX = "python:"
_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # module.path:attr (gymnasium ids have '-v')
_CALLABLES: dict[str, Callable[..., gym.Env]] = {}


def is_entry_point(env_id: str) -> bool:
    return not env_id.startswith(PYTHON_PREFIX) and bool(_ENTRY_POINT.match(env_id))


def is_python_env(env_id: str) -> bool:
    return env_id.startswith(PYTHON_PREFIX)


def env_name(env: str | Callable[..., gym.Env]) -> str:
    """The string a config holds for ``env``: ids and entry points as given; a callable becomes
    its entry point where it has one that imports, else ``python:<qualified name>`` (registered
    in this process)."""
    if isinstance(env, str):
        return env
    if not callable(env):
        raise ConfigError(f"env must be an env id, a 'module:EnvClass' entry point or a callable, got {env!r}")
    module, qualname = getattr(env, "__module__", None), getattr(env, "__qualname__", None)
    if module and qualname and module != "__main__" and "<" not in qualname:
        entry = f"{module}:{qualname}"
        try:
            if _resolve(entry) is env:
                return entry
        except ConfigError:
            pass
    for name, known in _CALLABLES.items():
        if known is env:
            return name
    base = _python_name(env)
    name, n = base, 1
    while name in _CALLABLES:  # another lambda of the same name: never hand out its env
        n += 1
        name = f"{base}-{n}"
    _CALLABLES[name] = env
    return name


def _python_name(env: Callable[..., gym.Env]) -> str:
    """``python:<qualified name>`` of a callable (before any number that tells two apart)."""
    name = getattr(env, "__qualname__", None) or type(env).__name__
    return PYTHON_PREFIX + name.replace("<", "").replace(">", "")


def adopt(env: str | Callable[..., gym.Env], saved: str) -> str:
    """For a resume or a loaded policy in a new process: ``env`` stands for the run's ``saved``
    env. A callable takes over a ``python:`` id of its own name (the process that trained the run
    may have numbered it); anything else must name the same env."""
    if is_python_env(saved) and callable(env) and not isinstance(env, str):
        base, own = re.sub(r"-\d+$", "", saved), _python_name(env)
        if own != base:
            raise ConfigError(f"the run was trained on env {saved!r}, not {own!r}")
        _CALLABLES[saved] = env
        return saved
    name = env_name(env)
    if name != saved:
        raise ConfigError(f"the run was trained on env {saved!r}, not {name!r}")
    return name


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Console scripts do not put the working directory on sys.path; `python -m` does. An
        # entry point to a module next to the user should work either way.
        cwd = os.getcwd()
        if exc.name and module.startswith(exc.name) and cwd not in sys.path:
            sys.path.insert(0, cwd)
            return _import(module)
        raise ConfigError(f"cannot import module {module!r} for the env entry point ({exc})") from None


def _resolve(entry: str) -> Callable[..., gym.Env]:
    module, attr = entry.split(":")
    obj: Any = _import(module)
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"module {module!r} has no {attr!r} (env entry point {entry!r})")
    if not callable(obj):
        raise ConfigError(f"env entry point {entry!r} is not a class or function")
    return obj


def _registered_by_module(env_id: str) -> bool:
    """gymnasium's own ``module:EnvId`` form: importing the module registers EnvId (then
    ``gym.make`` makes it, with its TimeLimit and kwargs); it wins over an attribute of that name."""
    module, name = env_id.split(":")
    _import(module)
    return name in gym.registry


def make_gym(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` for ids, entry points and registered callables, with gymnasium's checks and
    wrappers; errors are one-line ConfigErrors."""
    if kwargs.get("render_mode") is None:
        kwargs.pop("render_mode", None)  # factories that never render need not take the argument
    if is_python_env(env_id):
        creator = _CALLABLES.get(env_id)
        if creator is None:
            raise ConfigError(f"env {env_id!r} was a Python callable of another process; pass the same callable "
                              "again (accelerl.resume(run_dir, env=...)), or use a 'module:EnvClass' entry point")
    elif is_entry_point(env_id) and not _registered_by_module(env_id):
        creator = _resolve(env_id)
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return gym.make(env_id, **kwargs)
        except (gym.error.Error, ImportError) as exc:  # NameNotFound, VersionNotFound, a missing module ...
            raise ConfigError(f"unknown or unavailable env id {env_id!r}: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(GymEnvSpec(id=env_id.replace(":", "-"), entry_point=creator), **kwargs)
    except Exception as exc:  # the user's constructor: say which env and why, in one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"could not build env {env_id!r}: {type(exc).__name__}: {first}") from None
    return env
