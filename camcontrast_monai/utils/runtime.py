"""Process-level settings every entry point applies before heavy work starts."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["DISABLE_ENV", "tune_malloc", "tune_malloc_unless_disabled"]

DISABLE_ENV = "CAMCONTRAST_DEFAULT_MALLOC"

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD_BYTES = 1 << 30

_applied = False


def tune_malloc() -> bool:
    """Keep freed tensor memory in glibc's heap instead of returning it to the OS after every step.

    By default glibc serves big blocks with mmap and unmaps them on free, so each training step pays
    page faults to get its activations back; on the 2-core VMs we measured large-tensor training
    1.5-5x slower and erratic that way. ``M_MMAP_MAX=0`` and a 1 GiB trim threshold stop that.
    Returns whether the setting took effect (False off glibc, e.g. macOS or musl). Idempotent.
    """
    global _applied
    if _applied:
        return True
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        logging.getLogger(__name__).debug("mallopt unavailable (%s); keeping the default allocator", libc_name)
        return False
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
    return _applied


def tune_malloc_unless_disabled() -> bool:
    """:func:`tune_malloc`, unless the environment variable ``CAMCONTRAST_DEFAULT_MALLOC=1`` asks to keep glibc's default.

    Called when the package is imported, so every entry point gets it: the ``camcontrast`` CLI, the demo,
    and ``python -m monai.bundle run`` with any of our bundles (their configs import ``camcontrast_monai``
    before any network or data exist). The cost: freed heap memory stays with the process (up to the
    1 GiB trim threshold per process, DataLoader workers included) instead of going back to the OS.
    """
    if os.environ.get(DISABLE_ENV, "0") not in ("", "0"):
        return False
    return tune_malloc()
