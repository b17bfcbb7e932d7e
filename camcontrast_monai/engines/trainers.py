"""Ignite trainers for the two CAMContrast stages, built on MONAI's ``SupervisedTrainer``.

Both stages need more than ``loss(network(image), label)``: stage 1 also needs the CAMs of the same
forward pass (Eq. 2-4) and stage 2 feeds two views to two encoders (Eq. 5). So each trainer keeps
everything ``SupervisedTrainer`` offers (handlers, events, metrics, checkpoints) and replaces only
the iteration. Optional autocast (bf16 on CPU or GPU) wraps the forward pass; the losses cast to
float32 themselves. Optional channels-last memory format (``channels_last=True``) converts the
network and every input batch (``channels_last`` in 2D, ``channels_last_3d`` in 3D).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_prepare_batch
from monai.utils import CommonKeys as Keys
from torch.nn.parallel import DistributedDataParallel

from camcontrast_monai.engines.distributed import LogitsAndCAMs
from camcontrast_monai.utils.tensors import plain_tensor

__all__ = [
    "BatchAugmentingTrainer",
    "FinetuneTrainer",
    "ForwardLossTrainer",
    "Stage1Trainer",
    "Stage2Trainer",
    "autocast_context",
    "bf16_supported",
    "resolve_autocast_dtype",
]

logger = logging.getLogger(__name__)

_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}  # by tensor rank: 2D and 3D images


def bf16_supported(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether bfloat16 autocast runs natively on ``device``, and a note saying why not.

    A CPU without native bf16 (AVX512-BF16 or AMX) emulates it, several times slower than float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return (True, "") if torch.cuda.is_bf16_supported() else (False, f"{torch.cuda.get_device_name(device)} lacks bf16")
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # older/other builds: fall back to trying it
        native = True
    if not native:
        return False, f"CPU lacks native bf16 support (capability {torch.backends.cpu.get_cpu_capability()})"
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
    except RuntimeError as error:  # pragma: no cover - depends on the build
        return False, f"bf16 autocast failed: {error}"
    return True, ""


def resolve_autocast_dtype(device: torch.device | str, dtype: str | None) -> str | None:
    """``dtype``, with ``"auto"`` resolved: "bfloat16" where ``device`` runs it natively, else None (float32),
    with a logged note saying why."""
    if dtype != "auto":
        return dtype
    supported, why = bf16_supported(device)
    if supported:
        return "bfloat16"
    logger.warning("autocast_dtype auto -> float32: %s", why)
    return None


def autocast_context(device: torch.device | str, dtype: str | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` ("bfloat16"/"float16") on the device's type, or a no-op for None."""
    if dtype is None:
        return contextlib.nullcontext()
    if dtype not in _AUTOCAST_DTYPES:
        raise ValueError(f"autocast dtype must be one of {sorted(_AUTOCAST_DTYPES)} or None, got {dtype!r}")
    return torch.autocast(torch.device(device).type, dtype=_AUTOCAST_DTYPES[dtype])


class ForwardLossTrainer(SupervisedTrainer):
    """A ``SupervisedTrainer`` whose iteration calls :meth:`forward_loss` instead of inferer + loss.

    It keeps what ``SupervisedTrainer``'s own iteration offers around the forward pass:

    - ``prepare_batch``: a callable ``(batch, device, non_blocking) -> batch dict`` applied to each
      collated batch first (MONAI's default, which returns an ``(image, label)`` pair, is not called:
      these trainers read their keys from the dict themselves);
    - ``autocast_dtype``: ``"bfloat16"`` or ``"float16"`` autocast of the forward pass, or ``"auto"``:
      bfloat16 where the device runs it natively, else float32 with a logged note; with float16 on
      CUDA the loss is scaled by a ``torch.amp.GradScaler``, as ``SupervisedTrainer(amp=True)`` does;
    - ``accumulation_steps``: gradients of that many batches are summed (each loss divided by it) before
      one optimiser step, with a step at every epoch's end, as MONAI's ``GradientAccumulation``;
    - ``channels_last``: the network and every image batch in channels-last memory format.
    """

    def __init__(
        self, *args: Any, autocast_dtype: str | None = None, channels_last: bool = False, accumulation_steps: int = 1,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)  # decollate=True, MONAI's default: tracking handlers read output[0]
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}")
        self.autocast_dtype = resolve_autocast_dtype(self.state.device, autocast_dtype)
        autocast_context(self.state.device, self.autocast_dtype)  # validate the dtype now, not at iteration 1
        self.channels_last = channels_last
        self.accumulation_steps = accumulation_steps
        on_cuda = torch.device(self.state.device).type == "cuda"
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == "float16" and on_cuda else None
        self._network_format: torch.memory_format | None = None

    def _to_device(self, batch: Mapping[str, Any], key: str) -> torch.Tensor:
        """``batch[key]`` on the training device as a plain tensor: a MONAI ``MetaTensor`` would carry its
        metadata bookkeeping through every operation of the forward and backward passes, which no step needs."""
        if key not in batch:
            raise KeyError(f"{type(self).__name__} needs '{key}' in every batch, got keys {sorted(batch)}")
        return self._memory_format(plain_tensor(batch[key]).to(self.state.device, non_blocking=self.non_blocking))

    def _memory_format(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.channels_last and tensor.ndim in _CHANNELS_LAST:
            memory_format = _CHANNELS_LAST[tensor.ndim]
            if self._network_format is None:  # the first image batch tells 2D from 3D
                self.network.to(memory_format=memory_format)
                self._network_format = memory_format
            tensor = tensor.contiguous(memory_format=memory_format)
        return tensor

    def forward_loss(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _iteration(self, engine: SupervisedTrainer, batchdata: Mapping[str, Any]) -> dict[str, Any]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        if engine.prepare_batch is not default_prepare_batch:
            batchdata = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
        in_epoch = (engine.state.iteration - 1) % engine.state.epoch_length  # 0-based position in the epoch
        window_starts = in_epoch % self.accumulation_steps == 0
        window_ends = (in_epoch + 1) % self.accumulation_steps == 0 or in_epoch + 1 == engine.state.epoch_length
        engine.network.train()
        if window_starts:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with autocast_context(engine.state.device, self.autocast_dtype):
            engine.state.output = self.forward_loss(batchdata)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        loss = engine.state.output[Keys.LOSS] / self.accumulation_steps
        (self.grad_scaler.scale(loss) if self.grad_scaler else loss).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if window_ends:
            if self.grad_scaler:
                self.grad_scaler.step(engine.optimizer)
                self.grad_scaler.update()
            else:
                engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


class FinetuneTrainer(ForwardLossTrainer):
    """Downstream fine-tuning: ``loss_function(inferer(image, network), label)``, as MONAI's
    ``SupervisedTrainer`` computes it, plus :class:`ForwardLossTrainer`'s autocast and channels-last.

    ``SupervisedTrainer(amp=True)`` autocasts on CUDA only, so bf16 on a CPU needs this trainer. The loss is
    computed in float32 outside autocast. The output holds ``image``, ``label``, ``pred`` and ``loss``, the keys ``SupervisedTrainer`` gives its handlers.
    """

    def forward_loss(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        images = self._to_device(batch, Keys.IMAGE)
        labels = self._to_device(batch, Keys.LABEL)
        predictions = self.inferer(images, self.network)
        # the loss (cross-entropy, Dice) in float32 whatever the forward pass ran in, as nt_xent does
        predictions = predictions.float() if torch.is_tensor(predictions) else [p.float() for p in predictions]
        with torch.autocast(torch.device(self.state.device).type, enabled=False):
            loss = self.loss_function(predictions, labels)
        return {Keys.IMAGE: images, Keys.LABEL: labels, Keys.PRED: predictions, Keys.LOSS: loss}


class Stage1Trainer(ForwardLossTrainer):
    """Stage 1: trains a :class:`~camcontrast_monai.networks.CAMClassifier` on coarse labels with Eq. 2.

    ``loss_function`` is a :class:`~camcontrast_monai.losses.CAMClassifierLoss`; the network must offer
    ``forward_with_cams``, or, for multi-process training, be a ``DistributedDataParallel`` around a
    :class:`~camcontrast_monai.engines.LogitsAndCAMs` (so the forward goes through DDP). Batches are
    dicts with ``image_key`` and ``label_key``. The output holds ``image``, ``label``, ``pred``
    (logits), ``loss`` and its ``cross_entropy`` and ``attention`` terms, so handlers can log each;
    decollated as in every MONAI trainer, it is one dict per sample, each with the batch's loss terms.
    """

    def __init__(self, *args: Any, image_key: str = "image", label_key: str = "label", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.image_key, self.label_key = image_key, label_key
        if isinstance(self.network, DistributedDataParallel) and not isinstance(
            self.network.module, LogitsAndCAMs
        ):
            raise TypeError(
                f"{type(self).__name__} needs DistributedDataParallel(LogitsAndCAMs(classifier)), got "
                f"DistributedDataParallel({type(self.network.module).__name__}): DDP exposes only forward(), "
                "so the CAMs must come out of it"
            )

    def logits_and_cams(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and raw CAMs of one forward pass; under DDP, through DDP's forward."""
        if isinstance(self.network, DistributedDataParallel):
            return self.network(images)
        return self.network.forward_with_cams(images)

    def forward_loss(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        images = self._to_device(batch, self.image_key)
        labels = self._to_device(batch, self.label_key).reshape(-1).long()
        logits, cams = self.logits_and_cams(images)
        terms = self.loss_function.terms(logits, cams, labels)
        return {Keys.IMAGE: images, Keys.LABEL: labels, Keys.PRED: logits, **terms}


class BatchAugmentingTrainer(ForwardLossTrainer):
    """A :class:`ForwardLossTrainer` that may augment its image batches itself, on the training device.

    ``batch_augmentation(images, draw)`` (:class:`~camcontrast_monai.transforms.BatchStage2Augmentation` in
    2D, :class:`~camcontrast_monai.transforms.BatchAffineIntensityAugmentation` for the 3D bundle's affine and
    intensity chain) draws its parameters from ``draw`` alone, so a resumed run repeats the uninterrupted
    one. Without it the data loader has augmented each sample and :meth:`augment` is the identity.
    """

    def __init__(
        self, *args: Any, batch_augmentation: Callable[[torch.Tensor, int], torch.Tensor] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.batch_augmentation = batch_augmentation

    def augment(self, images: torch.Tensor, view: int = 0, views: int = 1) -> torch.Tensor:
        """View ``view`` of ``views`` of this iteration's batch, in float32 without autograd.

        Its draw is ``iteration * views + view``: distinct for every view of every iteration, and the
        iteration itself for a single view.
        """
        if self.batch_augmentation is None:
            return images
        draw = self.state.iteration * views + view
        with torch.no_grad(), torch.autocast(torch.device(self.state.device).type, enabled=False):
            return self._memory_format(self.batch_augmentation(images.float(), draw))


class Stage2Trainer(BatchAugmentingTrainer):
    """Stage 2: trains a :class:`~camcontrast_monai.networks.CAMContrastNet` on image/heatmap crop pairs.

    ``loss_function`` is an :class:`~camcontrast_monai.losses.NTXentLoss`. Batches are dicts with the image
    crops under ``image_key`` and the matching heatmap crops under ``heatmap_key``; with
    ``batch_augmentation`` the image crops arrive unaugmented and are augmented here (heatmaps never
    are). The output holds ``loss`` and the two projections (decollated: one dict per crop).
    """

    def __init__(self, *args: Any, image_key: str = "image", heatmap_key: str = "heatmap", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.image_key, self.heatmap_key = image_key, heatmap_key

    def forward_loss(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        images = self.augment(self._to_device(batch, self.image_key))
        heatmaps = self._to_device(batch, self.heatmap_key)
        z_image, z_heatmap = self.network(images, heatmaps)
        return {Keys.LOSS: self.loss_function(z_image, z_heatmap), "z_image": z_image, "z_heatmap": z_heatmap}
