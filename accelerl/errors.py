"""Errors a user can fix. The CLI turns each into one line on stderr and exit code 2."""


class AccelerlError(Exception):
    """Base class: bad input or a run that cannot go on; the message says what to do."""


class ConfigError(AccelerlError):
    """An impossible or inconsistent configuration, found before any training starts."""


class CheckpointError(AccelerlError):
    """A run directory that is missing, incomplete or from an incompatible config/version."""


class NonFiniteError(AccelerlError):
    """A loss became NaN/inf; the run stops and the last good checkpoint is kept."""
