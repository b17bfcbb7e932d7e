from camcontrast_monai.losses.attention import AttentionLoss, CAMClassifierLoss
from camcontrast_monai.losses.ntxent import (
    ImageHeatmapNTXentLoss,
    NTXentLoss,
    SimCLRLoss,
    collapsed_ntxent,
    nt_xent,
    ntxent_floor,
)
from camcontrast_monai.losses.supcon import SupConLoss, supcon_loss

__all__ = [
    "AttentionLoss",
    "CAMClassifierLoss",
    "ImageHeatmapNTXentLoss",
    "NTXentLoss",
    "SimCLRLoss",
    "SupConLoss",
    "collapsed_ntxent",
    "nt_xent",
    "ntxent_floor",
    "supcon_loss",
]
