from camcontrast_monai.losses.attention import AttentionLoss, CAMClassifierLoss
from camcontrast_monai.losses.ntxent import ImageHeatmapNTXentLoss, nt_xent
from camcontrast_monai.losses.simclr import SimCLRLoss
from camcontrast_monai.losses.supcon import SupConLoss, supcon_loss

__all__ = ["AttentionLoss", "CAMClassifierLoss", "ImageHeatmapNTXentLoss", "nt_xent", "SimCLRLoss", "SupConLoss", "supcon_loss"]
