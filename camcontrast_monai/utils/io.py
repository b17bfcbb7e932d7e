"""Crash-safe file writing: a killed run never leaves a half-written file that a later run trusts."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["atomic_path", "atomic_torch_save", "load_weights", "write_json"]


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


def load_weights(module: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load a plain state dict file into ``module`` strictly (every key, every shape) and return the module.

    ``weights_only=True``: a file that holds anything but tensors is refused, never unpickled.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no weights file at {path}: run the stage that writes it first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a plain PyTorch state dict (refused to unpickle it): {error}") from error
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit {type(module).__name__}: {error}") from error
    return module


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as JSON (sorted keys, indent 2) atomically; returns the path.

    Numpy and torch scalars/arrays become plain numbers/lists, tuples become lists, paths become
    strings, and NaN or infinite floats become ``null`` (strict JSON has no NaN).
    """
    text = json.dumps(_to_json_compatible(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def _to_json_compatible(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(key): _to_json_compatible(value) for key, value in obj.items()}
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return _to_json_compatible(obj.tolist())
    if isinstance(obj, np.generic):
        return _to_json_compatible(obj.item())
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [_to_json_compatible(item) for item in items]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj
