"""Markdown tables and JSON files for experiment reports, written so a crash never leaves half a file."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from camcontrast_monai.utils.io import write_json

__all__ = ["markdown_table", "write_json"]

_MISSING = "n/a"


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, float_format: str = "{:.3f}"
) -> str:
    """A GitHub-flavoured markdown table, one line per row, ending in a newline.

    ``columns`` defaults to every key in order of first appearance. Cells: floats go through
    ``float_format``; NaN becomes "n/a"; a ``(mean, std)`` tuple becomes "0.512 ± 0.031" (just the mean
    when the std is NaN, e.g. a single seed); a missing key is left empty; "|" in text is escaped.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [
        _table_line(columns),
        _table_line(["---"] * len(columns)),
        *(
            _table_line([_format_cell(row.get(column, ""), float_format) for column in columns])
            for row in rows
        ),
    ]
    return "\n".join(lines) + "\n"


def _table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _format_cell(value: Any, float_format: str) -> str:
    if isinstance(value, tuple) and len(value) == 2:
        mean, std = (_plain_scalar(v) for v in value)
        if _is_nan(std):
            return _format_cell(mean, float_format)
        return f"{_format_cell(mean, float_format)} ± {_format_cell(std, float_format)}"
    value = _plain_scalar(value)
    if value is None or _is_nan(value):
        return _MISSING
    if isinstance(value, float):
        return float_format.format(value)
    return str(value).replace("|", "\\|")


def _plain_scalar(value: Any) -> Any:
    """Numpy/torch scalars as Python numbers, so formatting treats them like floats and ints."""
    if isinstance(value, (np.generic, torch.Tensor)) and np.ndim(value) == 0:
        return value.item()
    return value


def _is_nan(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(value)
