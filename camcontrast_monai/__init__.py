"""CAMContrast on MONAI: coarse-to-fine representation learning for medical images via class activation maps."""

__version__ = "0.10.0"

from camcontrast_monai.utils.runtime import tune_malloc_unless_disabled as _tune_malloc_unless_disabled

_tune_malloc_unless_disabled()  # every entry point, bundle runs included (see camcontrast_monai.utils.runtime)
