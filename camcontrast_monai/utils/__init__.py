"""Small helpers every layer may use: nothing here imports the rest of the package."""

from camcontrast_monai.utils.switches import as_switch
from camcontrast_monai.utils.tensors import plain_tensor

__all__ = ["as_switch", "plain_tensor"]
