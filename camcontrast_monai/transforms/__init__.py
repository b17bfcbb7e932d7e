from camcontrast_monai.transforms.augment import (
    RandColorJitter,
    RandColorJitterd,
    RandGrayscale,
    RandGrayscaled,
    RandResizedCrop,
    RandResizedCropd,
    stage2_image_augmentation,
)
from camcontrast_monai.transforms.crops import (
    FIXED_CROP_NAMES_2D,
    FIXED_CROP_NAMES_3D,
    FixedCrops,
    FixedCropsd,
    SelectFixedCrop,
    SelectFixedCropd,
    fixed_crop_boxes,
    fixed_crop_names,
)
from camcontrast_monai.transforms.heatmap import CAMHeatmap, CAMHeatmapd, cam_heatmaps
from camcontrast_monai.transforms.suppression import (
    BackgroundSuppression,
    BackgroundSuppressiond,
    NegativeSuppression,
    NegativeSuppressiond,
    is_normal_label,
)

__all__ = [
    "FIXED_CROP_NAMES_2D",
    "FIXED_CROP_NAMES_3D",
    "BackgroundSuppression",
    "BackgroundSuppressiond",
    "CAMHeatmap",
    "CAMHeatmapd",
    "FixedCrops",
    "FixedCropsd",
    "NegativeSuppression",
    "NegativeSuppressiond",
    "RandColorJitter",
    "RandColorJitterd",
    "RandGrayscale",
    "RandGrayscaled",
    "RandResizedCrop",
    "RandResizedCropd",
    "SelectFixedCrop",
    "SelectFixedCropd",
    "cam_heatmaps",
    "fixed_crop_boxes",
    "fixed_crop_names",
    "is_normal_label",
    "stage2_image_augmentation",
]
