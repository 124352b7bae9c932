"""Observation masks that turn a fully observed task into a POMDP.

Gymnasium v5 MuJoCo tasks describe their observation layout in ``observation_structure``
(qpos entries first, then qvel, then extras such as contact forces), so the "-P" (positions
only) and "-V" (velocities only) variants are derived from it rather than hand-typed tables.
For v5 this gives: Hopper 0-4 of 11, Walker2d 0-7 of 17, HalfCheetah 0-7 of 17, Ant 0-12 of 105,
Humanoid 0-21 of 348 as positions; the next qvel entries as velocities.
"""

from __future__ import annotations

import numpy as np

from accelerl.errors import ConfigError

# Classic-control tasks without observation_structure: (positions, velocities) index lists.
_CLASSIC_LAYOUTS: dict[str, tuple[list[int], list[int]]] = {
    "Pendulum": ([0, 1], [2]),
    "MountainCarContinuous": ([0], [1]),
}


def layout(env_id: str, structure: dict[str, int] | None) -> tuple[list[int], list[int]] | None:
    """(position indices, velocity indices) of a task's observation, or None if unknown."""
    if structure and "qpos" in structure and "qvel" in structure:
        n_pos, n_vel = structure["qpos"], structure["qvel"]
        return list(range(n_pos)), list(range(n_pos, n_pos + n_vel))
    return _CLASSIC_LAYOUTS.get(env_id.split("/")[-1].split("-v")[0])


def resolve_mask(spec: str, env_id: str, obs_dim: int, structure: dict[str, int] | None) -> np.ndarray:
    """Indices of the observation to keep for ``--obs-mask spec``."""
    spec = spec.strip()
    if spec in ("velocities", "positions"):
        known = layout(env_id, structure)
        if known is None:
            raise ConfigError(
                f"--obs-mask {spec}: the observation layout of {env_id} is unknown; give indices, e.g. --obs-mask 0,1,2"
            )
        positions, velocities = known
        keep = positions if spec == "velocities" else velocities
        return np.asarray(keep, dtype=np.int64)
    try:
        keep = [int(tok) for tok in spec.split(",") if tok.strip()]
    except ValueError:
        raise ConfigError(f"--obs-mask must be 'velocities', 'positions' or indices like 0,1,2; got {spec!r}") from None
    if not keep:
        raise ConfigError("--obs-mask keeps no index")
    bad = [i for i in keep if not 0 <= i < obs_dim]
    if bad:
        raise ConfigError(f"--obs-mask index {bad[0]} is out of range for {env_id} (observation size {obs_dim})")
    if len(set(keep)) != len(keep):
        raise ConfigError(f"--obs-mask repeats an index: {spec}")
    if keep != sorted(keep):  # a reordering is no mask, and Policy.predict tells raw from masked by width
        raise ConfigError(f"--obs-mask indices must be in increasing order, got {spec}")
    return np.asarray(keep, dtype=np.int64)
