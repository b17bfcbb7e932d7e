from camcontrast_monai.data.crossval import crossval_splits, patient_folds
from camcontrast_monai.data.cxr_readers import (
    CHESTXRAY14_LABELS,
    chestxray14_splits,
    read_chestxray14,
    read_image_list,
    read_siim_acr,
    read_siim_rle,
    rle_decode,
    rle_encode,
)
from camcontrast_monai.data.datalists import (
    downstream_splits,
    find_images,
    heatmap_pairs,
    read_mask_datalist,
    subsample_by_patient,
    subsample_class_ratio,
)
from camcontrast_monai.data.datasets import FixedCropDataset, stage2_dataset
from camcontrast_monai.data.mri_readers import CAPS_T1_TEMPLATE, DIAGNOSIS_CLASSES, read_clinica_tsv
from camcontrast_monai.data.readers import (
    read_idrid_grading,
    read_image_label_csv,
    read_odir_annotations,
    read_refuge_glaucoma,
    split_by_patient,
)
from camcontrast_monai.data.validation import Problem, check_datalist, check_image_file, validate_datalist

__all__ = [
    "stage2_dataset",
    "CHESTXRAY14_LABELS",
    "chestxray14_splits",
    "read_chestxray14",
    "read_image_list",
    "read_siim_acr",
    "read_siim_rle",
    "rle_decode",
    "rle_encode",
    "CAPS_T1_TEMPLATE",
    "DIAGNOSIS_CLASSES",
    "crossval_splits",
    "patient_folds",
    "read_clinica_tsv",
    "FixedCropDataset",
    "Problem",
    "check_datalist",
    "check_image_file",
    "downstream_splits",
    "find_images",
    "heatmap_pairs",
    "read_idrid_grading",
    "read_image_label_csv",
    "read_mask_datalist",
    "read_odir_annotations",
    "read_refuge_glaucoma",
    "split_by_patient",
    "subsample_by_patient",
    "subsample_class_ratio",
    "validate_datalist",
]
