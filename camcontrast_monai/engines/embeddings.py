"""Collect per-image encoder embeddings during an evaluator run and write them as one ``.npz`` file."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from camcontrast_monai.utils.io import atomic_path

__all__ = ["EmbeddingWriter", "embedding_vector"]

logger = logging.getLogger(__name__)


def embedding_vector(pred: Any) -> np.ndarray:
    """One image's embedding as a float32 vector: ``(C,)`` stays, ``(C, *spatial)`` is average-pooled."""
    array = torch.as_tensor(pred.detach().cpu() if isinstance(pred, torch.Tensor) else np.asarray(pred))
    array = array.as_subclass(torch.Tensor).float()
    if array.ndim == 0:
        raise ValueError("an embedding needs a channel axis, got a scalar prediction")
    if array.ndim > 1:
        array = array.flatten(1).mean(dim=1)
    return array.numpy().astype(np.float32, copy=False)


def _source_path(item: Mapping, image_key: str) -> str:
    """The file an item was loaded from, read off the image's MetaTensor metadata (or ``<key>_meta_dict``)."""
    image = item.get(image_key)
    meta = getattr(image, "meta", None)
    if not meta:
        meta = item.get(f"{image_key}_meta_dict") or {}
    path = meta.get("filename_or_obj", "")
    if isinstance(path, (list, tuple)):  # a batch that was never decollated
        path = path[0] if path else ""
    return os.fspath(path) if path else ""


class EmbeddingWriter:
    """Ignite handler: gather ``pred`` embeddings of every image and write ``embeddings.npz`` when the run ends.

    Attach it to a MONAI ``SupervisedEvaluator`` (``val_handlers``) whose postprocessing pools the encoder's
    feature map to one vector per image (a feature map that was not pooled is average-pooled here). The file
    holds ``embeddings`` ``(N, C)`` float32 and ``images`` ``(N,)`` the source file paths (a unicode array, so
    ``np.load`` reads it without pickle), in data-loader order. It is written through
    :func:`camcontrast_monai.utils.io.atomic_path`, so an interrupted run never leaves a half-written file. Each
    run starts a fresh collection. Single-process only: under DDP every rank would write its own shard.
    """

    def __init__(
        self,
        output_path: str | os.PathLike,
        pred_key: str = "pred",
        image_key: str = "image",
    ) -> None:
        self.output_path = Path(output_path)
        self.pred_key = pred_key
        self.image_key = image_key
        self.embeddings: list[np.ndarray] = []
        self.images: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.embeddings = []
        self.images = []

    def collect(self, engine: Engine) -> None:
        output = engine.state.output
        items: Sequence[Mapping] = output if isinstance(output, (list, tuple)) else [output]
        batch = engine.state.batch
        batch_items = batch if isinstance(batch, (list, tuple)) else [None] * len(items)
        for index, item in enumerate(items):
            if not isinstance(item, Mapping) or self.pred_key not in item:
                raise KeyError(
                    f"EmbeddingWriter needs decollated engine outputs holding {self.pred_key!r}; "
                    f"got {type(item).__name__}"
                )
            pred = item[self.pred_key]
            if isinstance(pred, torch.Tensor) and pred.ndim > 1 and not isinstance(output, (list, tuple)):
                raise ValueError("EmbeddingWriter expects decollated outputs (SupervisedEvaluator(decollate=True))")
            self.embeddings.append(embedding_vector(pred))
            path = _source_path(item, self.image_key)
            if not path and index < len(batch_items) and isinstance(batch_items[index], Mapping):
                path = _source_path(batch_items[index], self.image_key)
            self.images.append(path)

    def write(self, engine: Engine | None = None) -> Path:
        if self.embeddings:
            sizes = {vector.shape for vector in self.embeddings}
            if len(sizes) != 1:
                raise ValueError(f"embeddings of different sizes cannot be stacked: {sorted(sizes)}")
            embeddings = np.stack(self.embeddings).astype(np.float32, copy=False)
        else:
            embeddings = np.zeros((0, 0), dtype=np.float32)
        images = np.asarray(self.images, dtype=str)
        with atomic_path(self.output_path) as temporary:
            np.savez(temporary, embeddings=embeddings, images=images)
        logger.info(f"wrote {len(self.images)} embeddings of size {embeddings.shape[1:]} to {self.output_path}")
        return self.output_path
