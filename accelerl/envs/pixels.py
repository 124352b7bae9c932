"""Image observations of MuJoCo tasks, rendered off-screen.

A pixel observation is one flat float32 vector: the frame in CHW order (values 0..255) followed
by the proprioceptive state (``state+rgb``) or nothing (``rgb``). One flat vector keeps the
replay, the window gathering and the acting path identical to state tasks; the replay stores the
frame part as uint8 (see ``ReplayBuffer``) and the CNN splits it off again (``FrameCNN``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np

from accelerl.errors import ConfigError

_PROBE = "import mujoco.{0} as m; c = m.GLContext(8, 8); c.make_current(); c.free()"


def choose_gl_backend() -> str:
    """Pick MuJoCo's off-screen GL backend before anything renders: the user's MUJOCO_GL if set,
    else EGL (GPU or Mesa), else OSMesa. Probed in a subprocess, because a failed backend cannot be
    swapped out in-process (PyOpenGL binds its platform at import)."""
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    errors = []
    for backend in ("egl", "osmesa"):
        env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
        proc = subprocess.run([sys.executable, "-c", _PROBE.format(backend)], env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
        errors.append(f"{backend}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
    raise ConfigError("off-screen rendering (--pixels, --video) needs EGL or OSMesa, and neither works here "
                      f"({'; '.join(errors)}); install libegl1 or libosmesa6, or set MUJOCO_GL")


def make_pixel_env(env_id: str, image_size: int, **kwargs) -> gym.Env:
    """The task with an off-screen renderer of ``image_size`` square frames. Shadows and
    multisampling are off: at 64 px they cost 5-10x the frame rate for no visible gain."""
    from accelerl.envs.custom import make_gym

    try:
        env = make_gym(env_id, render_mode="rgb_array", width=image_size, height=image_size, **kwargs)
    except (TypeError, ConfigError):  # a non-MuJoCo env has no width/height arguments
        raise ConfigError(f"--pixels renders MuJoCo tasks; {env_id} is not one") from None
    model = getattr(env.unwrapped, "model", None)
    if model is None or not hasattr(model, "vis"):
        env.close()
        raise ConfigError(f"--pixels renders MuJoCo tasks; {env_id} is not one")
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    return env


class PixelObservation(gym.ObservationWrapper):
    """Observation = rendered frame (CHW, flattened) [+ the wrapped env's state vector]."""

    def __init__(self, env: gym.Env, image_size: int, with_state: bool) -> None:
        super().__init__(env)
        self.with_state = with_state
        state_dim = int(env.observation_space.shape[0]) if with_state else 0
        size = 3 * image_size * image_size + state_dim
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        frame = np.asarray(self.env.render(), dtype=np.float32).transpose(2, 0, 1).ravel()
        if not self.with_state:
            return frame
        return np.concatenate([frame, np.asarray(observation, dtype=np.float32)])
