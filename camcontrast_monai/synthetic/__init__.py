"""Synthetic data sets in the real data sets' file formats, for the demos, the tests and the benchmarks.

Each generator draws images with known ground truth (lesion, finding and atrophy masks) and writes them
with the layout and metadata files of the data set it stands in for, so the bundles read them with the
same readers as the real data: ``fundus`` (colour photographs in the ODIR-5K and IDRiD layouts), ``cxr``
(ChestX-ray14 PNGs and SIIM-ACR DICOMs) and ``mri`` (ADNI-like T1 volumes in a Clinica layout).
"""

from camcontrast_monai.synthetic.cxr import (
    CXR_FINDINGS,
    generate_cxr,
    write_chestxray14_dataset,
    write_siim_dataset,
)
from camcontrast_monai.synthetic.fundus import (
    LESION_TYPES,
    MASK_NAMES,
    FundusSample,
    generate_fundus,
    write_fundus_dataset,
)
from camcontrast_monai.synthetic.mri import (
    DIAGNOSES,
    MRI_SHAPE,
    generate_brain,
    mri_affine,
    write_mri_dataset,
)
from camcontrast_monai.synthetic.refuge import GLAUCOMA_CUP_TO_DISC, write_refuge_dataset

__all__ = [
    "CXR_FINDINGS",
    "DIAGNOSES",
    "FundusSample",
    "GLAUCOMA_CUP_TO_DISC",
    "LESION_TYPES",
    "MASK_NAMES",
    "MRI_SHAPE",
    "generate_brain",
    "generate_cxr",
    "generate_fundus",
    "mri_affine",
    "write_chestxray14_dataset",
    "write_fundus_dataset",
    "write_mri_dataset",
    "write_refuge_dataset",
    "write_siim_dataset",
]
