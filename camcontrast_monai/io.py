"""Crash-safe file writing: a killed run never leaves a half-written file that a later run trusts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["atomic_path", "atomic_torch_save"]


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic on POSIX; a
    crash half-way leaves the old file (or none) and a stray hidden temporary, never a torn file. It
    ends in ``suffix`` (default: the target's) so writers that pick the format by extension
    (``np.save``, matplotlib) work. A plain unique name rather than ``mkstemp``, so the final file gets
    the usual umask permissions instead of owner-only ones. Parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}{suffix or target.suffix}")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`atomic_path`; returns the final path."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)
    return Path(path)
