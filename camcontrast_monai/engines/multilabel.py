"""Stage 1 in the multilabel setting (section 4.6): a CAM classifier over K findings with sigmoid outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monai.utils import CommonKeys as Keys

from camcontrast_monai.engines.trainers import Stage1Trainer

__all__ = ["MultilabelStage1Trainer"]


class MultilabelStage1Trainer(Stage1Trainer):
    """:class:`Stage1Trainer` whose labels may be K-dimensional 0/1 vectors (section 4.6).

    With ``multilabel=True`` each batch's ``label_key`` holds ``(B, K)`` indicators, the network's
    ``(B, K)`` logits are the sigmoid outputs' pre-activations and ``loss_function(logits, labels)`` is
    a multilabel loss such as ``torch.nn.BCEWithLogitsLoss``. The attention loss (Eq. 4) is not used
    there: it contrasts a normal-class CAM with the abnormal one, and a multilabel head has no normal
    class. With ``multilabel=False`` it is exactly :class:`Stage1Trainer` (coarse labels, Eq. 2), so one
    bundle config serves both settings.
    """

    def __init__(self, *args: Any, multilabel: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.multilabel = multilabel

    def forward_loss(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if not self.multilabel:
            return super().forward_loss(batch)
        images = self._to_device(batch, self.image_key)
        labels = self._to_device(batch, self.label_key).float().reshape(images.shape[0], -1)
        logits = self.network(images)
        return {Keys.IMAGE: images, Keys.LABEL: labels, Keys.PRED: logits, Keys.LOSS: self.loss_function(logits.float(), labels)}
