from camcontrast_monai.networks.backbones import ENCODER_NAMES, DenseNetEncoder, ResNetEncoder, build_encoder
from camcontrast_monai.networks.baselines import ProjectedEncoder, pretrained_encoder, segmentation_unet
from camcontrast_monai.networks.cam import class_activation_maps, minmax_normalize
from camcontrast_monai.networks.cam_classifier import CAMClassifier
from camcontrast_monai.networks.contrastive import (
    CAMContrastNet,
    HeatmapEncoder,
    ProjectionHead,
    global_average_pool,
)
from camcontrast_monai.networks.downstream import (
    EncoderClassifier,
    MultiHeadCrossEntropyLoss,
    encoder_classifier,
    load_encoder_weights,
    pretrained_unet,
)
from camcontrast_monai.networks.heatmaps import cam_heatmaps, positive_class_heatmaps, unweighted_heatmaps
from camcontrast_monai.networks.unet_encoder import UNetEncoder, unet_features

__all__ = [
    "ENCODER_NAMES",
    "DenseNetEncoder",
    "ResNetEncoder",
    "build_encoder",
    "ProjectedEncoder",
    "pretrained_encoder",
    "segmentation_unet",
    "CAMClassifier",
    "CAMContrastNet",
    "EncoderClassifier",
    "HeatmapEncoder",
    "MultiHeadCrossEntropyLoss",
    "ProjectionHead",
    "UNetEncoder",
    "cam_heatmaps",
    "class_activation_maps",
    "encoder_classifier",
    "global_average_pool",
    "load_encoder_weights",
    "minmax_normalize",
    "positive_class_heatmaps",
    "pretrained_unet",
    "unet_features",
    "unweighted_heatmaps",
]
