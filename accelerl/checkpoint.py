"""Atomic checkpoints: write to a temporary file in the same folder, fsync, then rename.

A crash (even ``kill -9``) mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from accelerl.errors import CheckpointError

FORMAT_VERSION = 1


def _atomic_write(path: Path, mode: str, write: Callable[[IO], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path) -> None:
    """Delete half-written files that a kill mid-write left behind (a pixel run's can be ~1 GB
    each); only one process writes a run's folder, so any such file at start is stale."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def atomic_save(obj: Any, path: Path) -> None:
    _atomic_write(path, "wb", lambda fh: torch.save(obj, fh))


def atomic_write_text(text: str, path: Path) -> None:
    _atomic_write(path, "w", lambda fh: fh.write(text))


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an accelerl checkpoint of format {FORMAT_VERSION}")
    return state
