"""Boolean switches that mean what they say, whichever way a command line spelled them."""

from __future__ import annotations

import numbers

__all__ = ["as_switch"]

_WORDS = {"true": True, "false": False, "1": True, "0": False}


def as_switch(value: object, name: str) -> bool:
    """``value`` of the boolean switch ``name`` as a bool: True/False, 1/0, or "true"/"false"/"1"/"0" in any case.

    python-fire, behind both ``python -m monai.bundle run`` and ``camcontrast``, makes only ``True`` and
    ``False`` booleans: ``--negative_suppression false`` arrives as the string ``'false'``, which Python
    treats as true, so the run would silently keep the switch on. Anything else (``'no'``, ``None``, 2)
    is refused with a ValueError that names the switch.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _WORDS:
        return _WORDS[value.strip().lower()]
    raise ValueError(f"switch {name!r} takes true or false (also True/False/1/0), got {value!r}")
