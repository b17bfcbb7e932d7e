"""Downstream models initialised from a pretrained U-Net encoder: classifiers and a U-Net segmenter.

The paper transfers only the image encoder f_I: classification tasks (IDRiD-cls, REFUGE-cls,
ChestX-ray14) put linear heads on its pooled features, either fine-tuning everything or training
the heads alone on a frozen encoder (linear evaluation); segmentation tasks (IDRiD-seg, REFUGE-seg,
Vessel-seg, SIIM-ACR) attach a U-Net decoder to it.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from torch import nn

from camcontrast_monai.networks.contrastive import global_average_pool
from camcontrast_monai.networks.unet_encoder import UNetEncoder, unet_features

__all__ = [
    "EncoderClassifier",
    "MultiHeadCrossEntropyLoss",
    "encoder_classifier",
    "load_encoder_weights",
    "pretrained_unet",
]

logger = logging.getLogger(__name__)

# Where whole-model state dicts keep their encoder, in the order they are tried.
# "image_encoder." is CAMContrastNet (stage 2), "encoder." is CAMClassifier (stage 1) or EncoderClassifier.
_WRAPPER_ENCODER_PREFIXES = ("image_encoder.", "encoder.")
_DATA_PARALLEL_PREFIX = "module."
_MISMATCHES_SHOWN = 5


def _read_state_dict_file(path: str | os.PathLike) -> object:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        # torch's own message (kept in the chained error) suggests weights_only=False, which we never do
        raise ValueError(
            f"{os.fspath(path)!r} holds more than tensors, so torch.load(weights_only=True) refused it. Only plain "
            "state dicts (names -> tensors, as saved by `torch.save(model.state_dict(), path)`) are accepted."
        ) from error


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def _encoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder part of a state dict, whether it is a bare encoder's or a whole pretraining model's."""
    if state and all(key.startswith(_DATA_PARALLEL_PREFIX) for key in state):
        state = _strip_prefix(state, _DATA_PARALLEL_PREFIX)
    for prefix in _WRAPPER_ENCODER_PREFIXES:
        if any(key.startswith(prefix) for key in state):
            return _strip_prefix(state, prefix)
    return dict(state)


def load_encoder_weights(
    module: nn.Module,
    weights: Mapping[str, torch.Tensor] | str | os.PathLike,
    prefix: str = "",
    source: str | None = None,
) -> list[str]:
    """Load pretrained U-Net encoder weights into ``module``, whose encoder sits under ``prefix``.

    ``prefix`` is ``""`` for a ``BasicUNet`` (its ``conv_0``, ``down_1`` .. ``down_4`` are the encoder)
    and ``"encoder."`` for an :class:`EncoderClassifier`.

    ``weights`` is a state dict or the path of a ``.pt`` file holding one (read with
    ``torch.load(weights_only=True)``, so only plain state dicts load). Besides a bare encoder's state
    dict it accepts a whole model's, and keeps only the encoder part:

    - keys under ``image_encoder.``: a stage-2 ``CAMContrastNet``; its heatmap encoder and projectors are dropped;
    - otherwise keys under ``encoder.``: a stage-1 ``CAMClassifier`` (or an ``EncoderClassifier``); its
      linear layer is dropped;
    - a leading ``module.`` on every key (a DataParallel / DDP wrapper) is removed first.

    Unlike ``monai.handlers.CheckpointLoader(strict_shape=False)``, which can load nothing and still
    log success, this is strict: every encoder tensor must match a tensor of the same name and shape
    in ``module``, the module must hold exactly those values afterwards, and at least one of its
    tensors must have changed (loading weights the module already has is taken as a mistake, such
    as passing the model's own state dict). Any failure raises ``ValueError``.

    Args:
        module: the model to initialise.
        weights: state dict, or path to a file holding one.
        prefix: where the encoder's keys live inside ``module.state_dict()``.
        source: name used in messages; defaults to the file path, or "a state dict".

    Returns:
        The names of the loaded tensors as they appear in ``module.state_dict()``.
    """
    if isinstance(weights, (str, os.PathLike)):
        source = source or os.fspath(weights)
        weights = _read_state_dict_file(weights)
    source = source or "a state dict"
    if not isinstance(weights, Mapping):
        raise ValueError(
            f"{source}: expected a state dict (mapping of names to tensors), got {type(weights).__name__}"
        )
    not_tensors = [key for key, value in weights.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{source}: expected a plain state dict of tensors, but {len(not_tensors)} entries are not tensors "
            f"(e.g. {not_tensors[:_MISMATCHES_SHOWN]}); a checkpoint of several objects must be unpacked first"
        )
    encoder_state = _encoder_state(weights)
    if not encoder_state:
        raise ValueError(f"{source}: the state dict holds no tensors to load")

    target_state = module.state_dict()
    incoming = {prefix + key: value for key, value in encoder_state.items()}
    missing = [key for key in incoming if key not in target_state]
    wrong_shape = [
        f"{key}: {tuple(value.shape)} vs {tuple(target_state[key].shape)} in the module"
        for key, value in incoming.items()
        if key in target_state and value.shape != target_state[key].shape
    ]
    if missing or wrong_shape:
        problems = [f"not in the module: {key}" for key in missing] + [
            f"shape mismatch {line}" for line in wrong_shape
        ]
        raise ValueError(
            f"{source} does not fit the module under prefix {prefix!r}: {len(missing)} missing and "
            f"{len(wrong_shape)} mismatched tensors; first: " + "; ".join(problems[:_MISMATCHES_SHOWN])
        )

    before = {key: target_state[key].detach().clone() for key in incoming}
    module.load_state_dict(incoming, strict=False)
    after = module.state_dict()
    not_loaded = [key for key, value in incoming.items() if not torch.equal(after[key], value.to(after[key]))]
    if not_loaded:
        raise ValueError(
            f"{source}: {len(not_loaded)} tensors did not take the loaded values, e.g. {not_loaded[:_MISMATCHES_SHOWN]}"
        )
    if all(torch.equal(before[key], after[key]) for key in incoming):
        raise ValueError(
            f"{source}: loading changed no weight of the module; it already held exactly these values"
        )
    logger.info("loaded %d tensors from %s", len(incoming), source)
    return list(incoming)


def _as_head_sizes(head_sizes: int | Sequence[int]) -> tuple[int, ...]:
    sizes = (head_sizes,) if isinstance(head_sizes, int) else tuple(int(size) for size in head_sizes)
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError(f"head_sizes must be one or more positive class counts, got {head_sizes}")
    return sizes


class EncoderClassifier(nn.Module):
    """Encoder -> global average pooling -> one linear head per task, for the downstream classification tasks.

    ``forward`` returns the heads' logits concatenated, ``(B, sum(head_sizes))``, so that one tensor
    flows through MONAI/Ignite engines; :meth:`split_logits` cuts it back per head. IDRiD-cls joint
    grading uses ``head_sizes=(5, 3)``: DR grade 0-4 and DME risk 0-2.

    ``freeze_encoder=True`` is the paper's linear evaluation protocol: the encoder's parameters get
    ``requires_grad=False`` and the encoder stays in eval mode even after ``.train()``, so its
    BatchNorm running statistics (and any dropout) stay frozen too; only the heads learn. The pooled
    features then pass a BatchNorm without affine parameters before the heads, as linear probing does in
    MAE (He et al., 2022): at evaluation it is a fixed per-channel standardisation, so the classifier stays
    linear in the features. Frozen features are badly scaled for SGD (the chest X-ray demo's encoder: std
    0.05 around a mean of 0.4 per channel); on them the linear evaluation's 90 steps underfit, 0.76 mean
    AUC against 0.84 standardised and 0.84 for a logistic-regression probe on the same split.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head_sizes: int | Sequence[int],
        feature_channels: int | None = None,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head_sizes = _as_head_sizes(head_sizes)
        if feature_channels is None:
            feature_channels = getattr(encoder, "out_channels", None)
        if not isinstance(feature_channels, int):
            raise ValueError("feature_channels must be given when the encoder has no integer `out_channels`")
        self.heads = nn.ModuleList(nn.Linear(feature_channels, size) for size in self.head_sizes)
        self.feature_norm = nn.BatchNorm1d(feature_channels, affine=False) if freeze_encoder else nn.Identity()
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> EncoderClassifier:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.feature_norm(global_average_pool(self.encoder(x)))
        return torch.cat([head(features) for head in self.heads], dim=1)

    def split_logits(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(B, sum(head_sizes))`` -> one ``(B, head_size)`` tensor per head."""
        return torch.split(logits, self.head_sizes, dim=1)


class MultiHeadCrossEntropyLoss(nn.Module):
    """Sum over heads of the cross-entropy of each head's logits, for multi-task grading such as IDRiD-cls.

    ``forward(logits, target)``: ``logits`` is ``(B, sum(head_sizes))`` as returned by
    :class:`EncoderClassifier`; ``target`` holds one class index per head, ``(B, n_heads)`` (``(B,)`` is
    accepted for a single head). Float targets, as a default collate may produce, are cast to integers.
    """

    def __init__(self, head_sizes: int | Sequence[int]) -> None:
        super().__init__()
        self.head_sizes = _as_head_sizes(head_sizes)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != sum(self.head_sizes):
            raise ValueError(
                f"logits have {logits.shape[1]} columns, heads {self.head_sizes} need {sum(self.head_sizes)}"
            )
        target = target.reshape(target.shape[0], -1).long()
        if target.shape[1] != len(self.head_sizes):
            raise ValueError(
                f"target needs one class per head ({len(self.head_sizes)}), got shape {tuple(target.shape)}"
            )
        head_logits = torch.split(logits, self.head_sizes, dim=1)
        return sum(F.cross_entropy(head, target[:, index]) for index, head in enumerate(head_logits))


def pretrained_unet(
    spatial_dims: int = 2,
    in_channels: int = 3,
    out_channels: int = 1,
    width: int = 64,
    encoder_weights: Mapping[str, torch.Tensor] | str | os.PathLike | None = None,
) -> BasicUNet:
    """MONAI ``BasicUNet`` with the paper's U-Net widths (``width`` .. ``16 * width``), ReLU and BatchNorm,
    its encoder initialised from ``encoder_weights`` (see :func:`load_encoder_weights`) when given."""
    unet = BasicUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        features=(*unet_features(width), width),
        act="relu",
        norm="batch",
    )
    if encoder_weights is not None:
        load_encoder_weights(unet, encoder_weights)
    return unet


def encoder_classifier(
    spatial_dims: int = 2,
    in_channels: int = 3,
    head_sizes: int | Sequence[int] = (5, 3),
    width: int = 64,
    encoder_weights: Mapping[str, torch.Tensor] | str | os.PathLike | None = None,
    freeze_encoder: bool = False,
    encoder: nn.Module | None = None,
) -> EncoderClassifier:
    """:class:`EncoderClassifier` on a :class:`UNetEncoder` (or on ``encoder``, e.g. a 3D ``ResNetEncoder``),
    initialised from ``encoder_weights`` when given.

    The defaults are IDRiD-cls joint grading (DR 5 grades, DME 3 risks); ``freeze_encoder=True`` gives linear evaluation.
    """
    encoder = encoder if encoder is not None else UNetEncoder(spatial_dims, in_channels, width)
    if encoder_weights is not None:
        load_encoder_weights(encoder, encoder_weights)
    return EncoderClassifier(encoder, head_sizes, freeze_encoder=freeze_encoder)
