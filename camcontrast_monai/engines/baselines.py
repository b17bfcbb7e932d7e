"""Ignite trainer for the baseline pretraining methods (SimCLR, SupCE, SupCon and their "-crop" variants)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.utils import CommonKeys as Keys

from camcontrast_monai.engines.trainers import BatchAugmentingTrainer

__all__ = ["MultiViewTrainer"]


class MultiViewTrainer(BatchAugmentingTrainer):
    """One iteration: ``loss_function(*network(views), [labels])`` for one or more views of each sample.

    All views go through the network in one concatenated batch (so batch norm sees every view, as in
    SimCLR) and the output is split back per view. With ``label_key`` set, the coarse labels are passed
    to the loss after the per-view outputs. So:

    - SimCLR(-crop): ``view_keys=("image", "image_2")``, no labels, loss ``SimCLRLoss()(z_1, z_2)``;
    - SupCon(-crop): the same two views plus labels, loss ``SupConLoss()(z_1, z_2, labels)``;
    - SupCE(-crop): one view plus labels, loss ``CrossEntropyLoss()(logits, labels)``.

    With ``batch_augmentation`` each batch holds one unaugmented crop per sample under ``view_keys[0]``,
    and every view is drawn from it here, batched on the training device; without it the data loader has
    made every view (:func:`~camcontrast_monai.transforms.augmented_views`).

    The output holds ``loss``, ``pred`` (the first view's output) and ``label`` when used, decollated per sample.
    """

    def __init__(
        self, *args: Any, view_keys: Sequence[str] = ("image", "image_2"), label_key: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if not view_keys:
            raise ValueError("MultiViewTrainer needs at least one view key")
        self.view_keys, self.label_key = tuple(view_keys), label_key

    def forward_loss(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if self.batch_augmentation is None:
            views = [self._to_device(batch, key) for key in self.view_keys]
        else:
            crops = self._to_device(batch, self.view_keys[0])
            views = [self.augment(crops, view, len(self.view_keys)) for view in range(len(self.view_keys))]
        outputs = self.network(torch.cat(views)).split([view.shape[0] for view in views])
        extra: dict[str, Any] = {}
        if self.label_key is not None:
            extra[Keys.LABEL] = self._to_device(batch, self.label_key).reshape(-1).long()
        loss = self.loss_function(*outputs, *extra.values())
        return {Keys.LOSS: loss, Keys.PRED: outputs[0], **extra}
