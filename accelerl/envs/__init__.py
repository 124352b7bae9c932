"""Environment construction: gymnasium vector envs, POMDP masks, pixels, resumable env state."""

from accelerl.envs.factory import EnvSpec, make_single_env, make_vector_env, probe_env, probe_for
from accelerl.envs.state import get_env_state, set_env_state

__all__ = ["EnvSpec", "get_env_state", "make_single_env", "make_vector_env", "probe_env", "probe_for", "set_env_state"]
