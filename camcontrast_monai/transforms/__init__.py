from camcontrast_monai.transforms.augment import (
    RandColorJitter,
    RandColorJitterd,
    RandGrayscale,
    RandGrayscaled,
    RandResizedCrop,
    RandResizedCropd,
    augmented_views,
    stage2_image_augmentation,
)
from camcontrast_monai.transforms.batch_affine import BatchAffineIntensityAugmentation
from camcontrast_monai.transforms.batch_augment import (
    BatchStage2Augmentation,
    resized_crop_flip_rotate_grid,
    resolve_batched_augmentation,
    stage2_batch_augmentation,
)
from camcontrast_monai.transforms.crops import (
    FIXED_CROP_NAMES_2D,
    FIXED_CROP_NAMES_3D,
    HEATMAP_STRIDE_2D,
    FixedCrops,
    FixedCropsd,
    SelectFixedCrop,
    SelectFixedCropd,
    fixed_crop_boxes,
    fixed_crop_names,
    paired_crop_boxes,
)
from camcontrast_monai.transforms.heatmap import (
    CAMHeatmap,
    CAMHeatmapd,
    cam_heatmaps,
    positive_class_heatmaps,
    unweighted_heatmaps,
)
from camcontrast_monai.transforms.paired_crops import CROP_STRATEGIES, RandPairedCropd, check_crop_strategy
from camcontrast_monai.transforms.rle import RLEMask, RLEMaskd
from camcontrast_monai.transforms.suppression import (
    BackgroundSuppression,
    BackgroundSuppressiond,
    NegativeSuppression,
    NegativeSuppressiond,
    is_normal_label,
)
from camcontrast_monai.transforms.volume import FitVolume, FitVolumed

__all__ = [
    "BatchAffineIntensityAugmentation",
    "stage2_batch_augmentation",
    "resolve_batched_augmentation",
    "FitVolume",
    "FitVolumed",
    "FIXED_CROP_NAMES_2D",
    "FIXED_CROP_NAMES_3D",
    "HEATMAP_STRIDE_2D",
    "BackgroundSuppression",
    "BatchStage2Augmentation",
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
    "RandPairedCropd",
    "CROP_STRATEGIES",
    "check_crop_strategy",
    "SelectFixedCrop",
    "SelectFixedCropd",
    "cam_heatmaps",
    "unweighted_heatmaps",
    "positive_class_heatmaps",
    "RLEMask",
    "RLEMaskd",
    "fixed_crop_boxes",
    "paired_crop_boxes",
    "fixed_crop_names",
    "resized_crop_flip_rotate_grid",
    "is_normal_label",
    "augmented_views",
    "stage2_image_augmentation",
]
