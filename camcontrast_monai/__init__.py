"""CAMContrast on MONAI: coarse-to-fine representation learning for medical images via class activation maps."""

__version__ = "0.1.0"
