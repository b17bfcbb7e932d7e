from camcontrast_monai.networks.cam import class_activation_maps, minmax_normalize
from camcontrast_monai.networks.cam_classifier import CAMClassifier
from camcontrast_monai.networks.contrastive import (
    CAMContrastNet,
    HeatmapEncoder,
    ProjectionHead,
    global_average_pool,
)
from camcontrast_monai.networks.unet_encoder import UNetEncoder, unet_features

__all__ = [
    "CAMClassifier",
    "CAMContrastNet",
    "HeatmapEncoder",
    "ProjectionHead",
    "UNetEncoder",
    "class_activation_maps",
    "global_average_pool",
    "minmax_normalize",
    "unet_features",
]
