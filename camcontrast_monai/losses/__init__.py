from camcontrast_monai.losses.attention import AttentionLoss, CAMClassifierLoss
from camcontrast_monai.losses.ntxent import ImageHeatmapNTXentLoss, nt_xent

__all__ = ["AttentionLoss", "CAMClassifierLoss", "ImageHeatmapNTXentLoss", "nt_xent"]
