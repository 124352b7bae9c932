"""--obs-mask: the documented index sets, explicit indices, and what the masked env returns."""

from __future__ import annotations

import numpy as np
import pytest

from accelerl.envs import make_vector_env, probe_env
from accelerl.envs.masks import resolve_mask
from accelerl.errors import ConfigError


def span(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b + 1))


# README table: (obs size, "velocities" keeps positions, "positions" keeps velocities)
DOCUMENTED = {
    "Hopper-v5": (11, span(0, 4), span(5, 10)),
    "Walker2d-v5": (17, span(0, 7), span(8, 16)),
    "HalfCheetah-v5": (17, span(0, 7), span(8, 16)),
    "Ant-v5": (105, span(0, 12), span(13, 26)),
    "Humanoid-v5": (348, span(0, 21), span(22, 44)),
    "Pendulum-v1": (3, (0, 1), (2,)),
}


@pytest.mark.parametrize("env_id", list(DOCUMENTED))
def test_named_masks_keep_the_documented_indices(env_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT (a deprecation warning of Humanoid) to the cwd
    size, positions, velocities = DOCUMENTED[env_id]
    hide_vel = probe_env(env_id, "velocities")
    hide_pos = probe_env(env_id, "positions")
    assert hide_vel.keep == positions and hide_vel.obs_dim == len(positions)
    assert hide_pos.keep == velocities and hide_pos.obs_dim == len(velocities)
    full = probe_env(env_id, None)
    assert full.keep is None and full.obs_dim == size


def test_masked_env_returns_the_kept_entries():
    spec = probe_env("Hopper-v5", "velocities")
    full_spec = probe_env("Hopper-v5", None)
    masked, full = make_vector_env(spec, 1), make_vector_env(full_spec, 1)
    try:
        o_m, _ = masked.reset(seed=3)
        o_f, _ = full.reset(seed=3)
        assert o_m.shape == (1, 5)
        np.testing.assert_array_equal(o_m, o_f[:, list(spec.keep)])
        act = np.full((1, 3), 0.3, dtype=np.float32)
        o_m, *_ = masked.step(act)
        o_f, *_ = full.step(act)
        np.testing.assert_array_equal(o_m, o_f[:, :5])
    finally:
        masked.close()
        full.close()


def test_explicit_indices():
    assert probe_env("Hopper-v5", "0,2, 7").keep == (0, 2, 7)
    assert probe_env("Pendulum-v1", "2").obs_dim == 1
    assert resolve_mask(" 10 ", "Hopper-v5", 11, None).tolist() == [10]


@pytest.mark.parametrize("spec,needle", [("11", "out of range"), ("0,-1", "out of range"), ("3,3", "repeat"),
                                         (",", "no index"), ("x", "indices"), ("velocity", "indices")])
def test_bad_masks_are_config_errors(spec, needle):
    with pytest.raises(ConfigError, match=needle):
        probe_env("Hopper-v5", spec)


def test_named_mask_on_a_task_without_known_layout():
    with pytest.raises(ConfigError, match="layout"):
        resolve_mask("velocities", "SomethingElse-v0", 4, None)
