from camcontrast_monai.data.datalists import downstream_splits, read_mask_datalist, subsample_by_patient
from camcontrast_monai.data.datasets import FixedCropDataset
from camcontrast_monai.data.readers import (
    read_idrid_grading,
    read_image_label_csv,
    read_odir_annotations,
    split_by_patient,
)
from camcontrast_monai.data.synthetic_fundus import (
    LESION_TYPES,
    MASK_NAMES,
    FundusSample,
    generate_fundus,
    write_fundus_dataset,
)
from camcontrast_monai.data.validation import Problem, check_datalist, check_image_file, validate_datalist

__all__ = [
    "LESION_TYPES",
    "MASK_NAMES",
    "FixedCropDataset",
    "FundusSample",
    "Problem",
    "check_datalist",
    "check_image_file",
    "downstream_splits",
    "generate_fundus",
    "read_idrid_grading",
    "read_image_label_csv",
    "read_mask_datalist",
    "read_odir_annotations",
    "split_by_patient",
    "subsample_by_patient",
    "validate_datalist",
    "write_fundus_dataset",
]
