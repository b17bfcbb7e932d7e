"""SIIM-ACR run-length codes of binary masks, shared by the reader (data) and the mask transform (transforms)."""

from __future__ import annotations

import numpy as np

__all__ = ["SIIM_EMPTY_MASK", "rle_decode", "rle_encode"]

SIIM_EMPTY_MASK = "-1"


def rle_decode(rle: str, height: int, width: int) -> np.ndarray:
    """SIIM-ACR run-length code -> ``(height, width)`` uint8 mask of 0/1, rows first like a PNG.

    Pixels are numbered column-major (``index = column * height + row``) and each run's start is
    counted from the end of the previous run, exactly as the challenge's ``rle2mask`` (whose result is
    transposed). ``-1`` (or an empty code) gives an all-zero mask.
    """
    text = rle.strip()
    mask = np.zeros(height * width, dtype=np.uint8)
    if text in ("", SIIM_EMPTY_MASK):
        return mask.reshape(height, width)
    try:
        numbers = [int(token) for token in text.split()]
    except ValueError as error:
        raise ValueError(f"run-length code is not a list of integers: {error}") from error
    if len(numbers) % 2:
        raise ValueError(f"run-length code has an odd count of numbers ({len(numbers)}); expected start/length pairs")
    position = 0
    for start, length in zip(numbers[0::2], numbers[1::2], strict=True):
        if start < 0 or length <= 0:
            raise ValueError(f"run-length code has a negative start or non-positive length: {start} {length}")
        position += start
        if position + length > mask.size:
            raise ValueError(f"run ending at pixel {position + length} exceeds the {height}x{width} image")
        mask[position : position + length] = 1
        position += length
    return mask.reshape(width, height).T


def rle_encode(mask: np.ndarray) -> str:
    """``(height, width)`` mask -> SIIM-ACR run-length code (the inverse of :func:`rle_decode`); ``-1`` if empty."""
    flat = np.asarray(mask).astype(bool).T.reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    if starts.size == 0:
        return SIIM_EMPTY_MASK
    relative = starts - np.concatenate([[0], ends[:-1]])
    return " ".join(f"{start} {length}" for start, length in zip(relative, ends - starts, strict=True))
