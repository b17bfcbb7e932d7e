"""Synthetic T1-weighted brain MRI for the 3D setting (paper section 4.7), in a Clinica/ADNI-style layout.

Each volume is 80x96x80 voxels of 2 mm (the size Clinica-preprocessed ADNI tensors have in the paper),
axes in RAS order (axis 0 left -> right, axis 1 posterior -> anterior, axis 2 inferior -> superior)
with an affine that says so. The head is built from ellipsoids: scalp, skull, CSF, a cortical grey
matter ribbon folded by sulci, white matter, deep grey matter, two lateral ventricles and two
hippocampi.

Disease is graded atrophy with one severity ``a`` per session:

* lateral ventricles grow by up to 90% per axis, uniformly with ``a``;
* hippocampi shrink by up to 40% per axis; the freed space becomes CSF (an enlarged temporal horn);
* sulci widen, most in the temporal and parietal lobes, so the cortical ribbon thins there.

Severity ranges overlap on purpose: cognitively normal (CN) subjects get ``a`` in [0, 0.3] (normal
ageing), mild cognitive impairment (MCI) [0.15, 0.55] and Alzheimer's disease (AD) [0.45, 1.0]; later
sessions of a subject progress by a class-dependent rate per year. Together with subject variation
(head size, position, intensity scale, bias field, noise) MCI is hard to tell from CN, as in reality.

For checking heatmaps, the ground-truth atrophy map of every session is saved too: the voxels that are
brain tissue in the same subject without disease (``a = 0``) but CSF with it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import GaussianSmooth
from tqdm.auto import tqdm

from camcontrast_monai.utils.io import atomic_path

__all__ = [
    "DIAGNOSES",
    "MRI_SHAPE",
    "VOXEL_SIZE_MM",
    "BrainSession",
    "mri_affine",
    "generate_brain",
    "write_mri_dataset",
]

MRI_SHAPE = (80, 96, 80)
VOXEL_SIZE_MM = 2.0
DIAGNOSES = ("CN", "MCI", "AD")

# atrophy severity at baseline (uniform range) and progression per year, by diagnosis
_SEVERITY = {"CN": (0.0, 0.3), "MCI": (0.15, 0.55), "AD": (0.45, 1.0)}
_PROGRESSION_PER_YEAR = {"CN": 0.01, "MCI": 0.05, "AD": 0.08}
# T1-weighted intensities (before subject scaling): brighter white matter, dark CSF and bone
_INTENSITY = {"background": 0.0, "scalp": 0.6, "skull": 0.1, "csf": 0.15, "gm": 0.45, "wm": 0.75}
_TISSUE = {"background": 0, "scalp": 1, "skull": 2, "csf": 3, "gm": 4, "wm": 5}
_BRAIN_TISSUE = (_TISSUE["gm"], _TISSUE["wm"])


def mri_affine(shape: Sequence[int] = MRI_SHAPE, voxel_size: float = VOXEL_SIZE_MM) -> np.ndarray:
    """RAS affine of the synthetic volumes: ``voxel_size`` mm voxels, the volume centre at world (0, 0, 0)."""
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = -voxel_size * (np.asarray(shape, dtype=float) - 1) / 2
    return affine


@dataclasses.dataclass(frozen=True)
class _Subject:
    """What stays fixed across the sessions of one subject."""

    head_scale: float
    folding_seed: int
    intensity_scale: float
    ventricle_shape: tuple[float, float, float]
    hippocampus_offset: tuple[float, float, float]


@dataclasses.dataclass
class BrainSession:
    """One generated session: the T1 volume, its atrophy map and what made them."""

    volume: np.ndarray  # float32 (80, 96, 80), RAS axis order
    atrophy_map: np.ndarray  # uint8 (80, 96, 80), 1 where disease turned brain tissue into CSF
    severity: float
    shift: tuple[float, float, float]


def _sample_subject(rng: np.random.Generator) -> _Subject:
    return _Subject(
        head_scale=float(rng.uniform(0.92, 1.06)),
        folding_seed=int(rng.integers(2**31)),
        intensity_scale=float(rng.uniform(0.85, 1.15)),
        ventricle_shape=tuple(float(v) for v in rng.uniform(0.85, 1.15, size=3)),
        hippocampus_offset=tuple(float(v) for v in rng.normal(0.0, 1.0, size=3)),
    )


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], cells: Sequence[int]) -> np.ndarray:
    """Smooth random field in about [-1, 1]: a coarse Gaussian grid upsampled trilinearly."""
    coarse = torch.from_numpy(rng.standard_normal(tuple(cells)).astype(np.float32))[None, None]
    field = F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)[0, 0].numpy()
    return field / max(float(np.abs(field).max()), 1e-6)


def _ellipsoid_radius(grid: tuple[np.ndarray, ...], centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """Normalised ellipsoid radius: < 1 inside the ellipsoid, 1 on its surface."""
    return np.sqrt(sum(((axis - c) / r) ** 2 for axis, c, r in zip(grid, centre, radii, strict=True)))


def _tissue_labels(subject: _Subject, severity: float, shift: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """Tissue label volume (see ``_TISSUE``) of one subject at atrophy ``severity``."""
    s = subject.head_scale
    centre = np.asarray(shape, dtype=float) / 2 - 0.5 + np.asarray(shift)
    grid = tuple(np.arange(n, dtype=np.float32)[tuple(slice(None) if a == i else None for a in range(3))] for i, n in enumerate(shape))
    rel = [axis - c for axis, c in zip(grid, centre, strict=True)]
    # coordinates in units of the head size, so every structure scales with the head
    head = _ellipsoid_radius(grid, centre, (36 * s, 44 * s, 36 * s))
    brain = _ellipsoid_radius(grid, centre + np.array([0, 0, 1.5 * s]), (31 * s, 39 * s, 30 * s))

    labels = np.zeros(tuple(shape), dtype=np.uint8)
    labels[head <= 1.0] = _TISSUE["scalp"]
    labels[head <= 0.955] = _TISSUE["skull"]
    labels[head <= 0.9] = _TISSUE["csf"]

    folding_rng = np.random.default_rng(subject.folding_seed)
    folds = _smooth_field(folding_rng, shape, (14, 16, 14))
    ribbon_noise = _smooth_field(folding_rng, shape, (6, 7, 6))
    # temporal (lateral, inferior) and parietal (superior, posterior) lobes carry most cortical atrophy
    temporal = np.exp(-(((np.abs(rel[0]) - 24 * s) / (10 * s)) ** 2 + (rel[1] / (22 * s)) ** 2 + ((rel[2] + 10 * s) / (10 * s)) ** 2))
    parietal = np.exp(-((rel[0] / (25 * s)) ** 2 + ((rel[1] + 20 * s) / (14 * s)) ** 2 + ((rel[2] - 15 * s) / (12 * s)) ** 2))
    regional = 0.25 + 0.75 * np.clip(temporal + parietal, 0, 1)
    sulcus_width = 0.08 + 0.22 * severity * regional
    cortex = brain <= 1.0 - 0.02 * severity * regional  # the whole brain also shrinks away from the skull
    sulci = (np.abs(folds) < sulcus_width) & (brain > 0.72)
    labels[cortex & ~sulci] = _TISSUE["gm"]
    labels[cortex & (brain <= 0.8 + 0.05 * ribbon_noise - 0.05 * severity * regional)] = _TISSUE["wm"]

    # deep grey matter (thalami / basal ganglia)
    for side in (-1, 1):
        deep = _ellipsoid_radius(grid, centre + s * np.array([side * 8, -2, 2]), (5 * s, 9 * s, 6 * s))
        labels[deep <= 1.0] = _TISSUE["gm"]
    # lateral ventricles, enlarged with atrophy
    growth = 1.0 + 0.9 * severity
    vx, vy, vz = subject.ventricle_shape
    for side in (-1, 1):
        ventricle = _ellipsoid_radius(
            grid, centre + s * np.array([side * 5, 2, 6]), (3.2 * s * vx * growth, 14 * s * vy * (1 + 0.3 * severity), 4.5 * s * vz * growth)
        )
        labels[ventricle <= 1.0] = _TISSUE["csf"]
    # hippocampi in a CSF pocket whose size is the healthy hippocampus: shrinkage leaves CSF behind
    hx, hy, hz = subject.hippocampus_offset
    shrink = 1.0 - 0.4 * severity
    for side in (-1, 1):
        position = centre + s * np.array([side * (18 + 0.5 * hx), -6 + hy, -11 + 0.5 * hz])
        healthy = _ellipsoid_radius(grid, position, (4 * s, 10 * s, 4 * s))
        labels[healthy <= 1.0] = _TISSUE["csf"]
        labels[healthy <= shrink] = _TISSUE["gm"]
    return labels


def _render_t1(labels: np.ndarray, subject: _Subject, rng: np.random.Generator) -> np.ndarray:
    """T1 intensities: tissue means, partial-volume blur, a smooth bias field, Rician-like noise."""
    lookup = np.zeros(len(_TISSUE), dtype=np.float32)
    for name, index in _TISSUE.items():
        lookup[index] = _INTENSITY[name]
    image = GaussianSmooth(sigma=0.7)(lookup[labels][None])[0]
    bias = 1.0 + 0.08 * _smooth_field(rng, labels.shape, (3, 3, 3))
    image = image * bias * subject.intensity_scale
    noise_level = float(rng.uniform(0.015, 0.03))
    real = image + rng.normal(0.0, noise_level, size=image.shape)
    imaginary = rng.normal(0.0, noise_level, size=image.shape)
    return np.sqrt(real**2 + imaginary**2).astype(np.float32)


def generate_brain(
    subject_rng: np.random.Generator, session_rng: np.random.Generator, severity: float, shape: Sequence[int] = MRI_SHAPE
) -> BrainSession:
    """One session of one subject: ``subject_rng`` fixes the anatomy (same stream for every session of the
    subject), ``session_rng`` the head position, bias field and noise of this scan."""
    if not 0.0 <= severity <= 1.5:
        raise ValueError(f"atrophy severity must be in [0, 1.5], got {severity}")
    subject = _sample_subject(subject_rng)
    shift = tuple(float(v) for v in session_rng.uniform(-3, 3, size=3))
    labels = _tissue_labels(subject, severity, shift, shape)
    healthy = _tissue_labels(subject, 0.0, shift, shape)
    atrophy = np.isin(healthy, _BRAIN_TISSUE) & (labels == _TISSUE["csf"])
    return BrainSession(_render_t1(labels, subject, session_rng), atrophy.astype(np.uint8), float(severity), shift)


def _session_ids(n_sessions: int) -> list[tuple[str, int]]:
    """Clinica session labels (``ses-M000``, ``ses-M012``, ...) with months since baseline."""
    return [(f"ses-M{12 * k:03d}", 12 * k) for k in range(n_sessions)]


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    with atomic_path(path, suffix=".nii.gz") as temporary:
        nib.save(image, temporary)


def write_mri_dataset(
    out: str | Path,
    n_subjects: int = 60,
    seed: int = 0,
    max_sessions: int = 2,
    class_fractions: Sequence[float] = (0.4, 0.35, 0.25),
    shape: Sequence[int] = MRI_SHAPE,
) -> dict:
    """Write a synthetic ADNI-like cohort in a Clinica (CAPS t1-linear) layout and return its manifest.

    ::

        out/labels.tsv       participant_id, session_id, diagnosis (CN/MCI/AD), age, sex
        out/subjects/<participant_id>/<session_id>/t1_linear/<participant_id>_<session_id>_T1w.nii.gz
        out/atrophy/<participant_id>_<session_id>_atrophy.nii.gz     ground-truth atrophy mask (uint8)
        out/manifest.json    generation parameters and, per session, the atrophy severity

    Every subject has 1 to ``max_sessions`` sessions 12 months apart with the same diagnosis; diagnoses
    follow ``class_fractions`` (CN, MCI, AD; ADNI-1 is roughly 0.3 / 0.5 / 0.2). The same arguments give
    the same volumes.
    """
    if n_subjects < 3:
        raise ValueError(f"need at least 3 subjects (one per diagnosis), got {n_subjects}")
    if len(class_fractions) != 3 or min(class_fractions) <= 0:
        raise ValueError(f"class_fractions needs three positive numbers (CN, MCI, AD), got {list(class_fractions)}")
    if max_sessions < 1:
        raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
    out = Path(out)
    fractions = np.asarray(class_fractions, dtype=float) / sum(class_fractions)
    counts = np.maximum(1, np.round(fractions * n_subjects).astype(int))
    counts[int(np.argmax(counts))] += n_subjects - counts.sum()
    root = np.random.SeedSequence(seed)
    order_rng = np.random.default_rng(root.spawn(1)[0])
    diagnoses = order_rng.permutation(np.repeat(np.arange(3), counts))
    subject_seeds = root.spawn(n_subjects + 1)[1:]
    affine = mri_affine(shape)

    rows, sessions = [], []
    for index in tqdm(range(n_subjects), desc="synthetic MRI", unit="subject"):
        diagnosis = DIAGNOSES[int(diagnoses[index])]
        participant = f"sub-ADNI{index + 1:04d}"
        meta_seed, anatomy_seed, *scan_seeds = subject_seeds[index].spawn(2 + max_sessions)
        meta_rng = np.random.default_rng(meta_seed)
        n_sessions = int(meta_rng.integers(1, max_sessions + 1))
        baseline = float(meta_rng.uniform(*_SEVERITY[diagnosis]))
        age = float(meta_rng.uniform(60, 88))
        sex = str(meta_rng.choice(["F", "M"]))
        for (session, months), scan_seed in zip(_session_ids(n_sessions), scan_seeds, strict=False):
            severity = min(1.0, baseline + _PROGRESSION_PER_YEAR[diagnosis] * months / 12)
            brain = generate_brain(np.random.default_rng(anatomy_seed), np.random.default_rng(scan_seed), severity, shape)
            stem = f"{participant}_{session}"
            image_path = out / "subjects" / participant / session / "t1_linear" / f"{stem}_T1w.nii.gz"
            _write_nifti(brain.volume, affine, image_path)
            _write_nifti(brain.atrophy_map, affine, out / "atrophy" / f"{stem}_atrophy.nii.gz")
            rows.append([participant, session, diagnosis, f"{age + months / 12:.1f}", sex])
            sessions.append({"participant_id": participant, "session_id": session, "diagnosis": diagnosis,
                             "severity": round(severity, 4), "shift_voxels": [round(v, 2) for v in brain.shift]})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "labels.tsv") as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["participant_id", "session_id", "diagnosis", "age", "sex"])
        writer.writerows(rows)
    manifest = {
        "generator": "camcontrast_monai.synthetic.mri",
        "seed": seed,
        "shape": list(shape),
        "voxel_size_mm": VOXEL_SIZE_MM,
        "axes": "RAS",
        "n_subjects": n_subjects,
        "n_sessions": len(sessions),
        "subjects_per_diagnosis": {DIAGNOSES[k]: int(counts[k]) for k in range(3)},
        "sessions": sessions,
    }
    with atomic_path(out / "manifest.json") as temporary:
        temporary.write_text(json.dumps(manifest, indent=1))
    return manifest
