"""SIIM-ACR run-length masks as a MONAI transform: decode at the loaded image's own size."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from camcontrast_monai.utils.rle import rle_decode

__all__ = ["RLEMask", "RLEMaskd"]


class RLEMask(Transform):
    """Run-length codes ``[code, ...]`` and a 2D ``spatial_shape`` (rows, columns) -> mask ``(1, rows, columns)``.

    The codes are decoded with :func:`~camcontrast_monai.data.cxr_readers.rle_decode` and unioned (SIIM-ACR
    lists each pneumothorax region of an image on its own row); no code or ``-1`` gives zeros. The mask
    is float32 0/1 in rows-first order, the order of an image loaded by ``PILReader(reverse_indexing=False)``
    or by ``ITKReader(reverse_indexing=True)`` with its slice axis squeezed.
    """

    def __call__(self, codes: str | Sequence[str], spatial_shape: Sequence[int]) -> torch.Tensor:
        if len(spatial_shape) != 2:
            raise ValueError(f"run-length masks are 2D; got spatial shape {tuple(spatial_shape)}")
        height, width = (int(size) for size in spatial_shape)
        mask = np.zeros((height, width), dtype=np.uint8)
        for code in [codes] if isinstance(codes, str) else codes:
            mask |= rle_decode(code, height, width)
        return torch.from_numpy(mask.astype(np.float32))[None]


class RLEMaskd(MapTransform):
    """Dictionary twin of :class:`RLEMask`: decodes ``keys`` (the codes) at the size of ``ref_key``
    (a channel-first 2D image) into ``mask_key`` and removes the codes, which cannot be collated."""

    def __init__(
        self, keys: KeysCollection, ref_key: str = "image", mask_key: str = "label", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"RLEMaskd reads exactly one key of run-length codes, got {self.keys}")
        self.ref_key, self.mask_key = ref_key, mask_key
        self.decode = RLEMask()

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.mask_key] = self.decode(d.pop(key), d[self.ref_key].shape[1:])
        return d
