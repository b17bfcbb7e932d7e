"""Synthetic frontal (PA) chest radiographs with finding masks, in the ChestX-ray14 and SIIM-ACR file formats.

No real chest X-ray set can be downloaded where this package is tested, so the tests and the demo run on
radiographs drawn here: 8-bit grayscale, dark air outside the body, a soft-tissue thorax with shoulders
and neck, two dark lungs whose lower borders are the diaphragm domes (sharp costophrenic angles at their
lateral ends), faint lung markings (vessels) radiating from the hila, a bright spine/mediastinum, the
heart over the lower medial lungs (cardiothoracic ratio about 0.45), curved posterior ribs and the two
clavicles. Image left is the patient's right, as on a PA film.

Abnormal images carry one or more findings, each with its own pixel mask and ChestX-ray14 label:

* ``Nodule`` (small round opacity) / ``Mass`` (larger one), inside a lung;
* ``Consolidation``: a fluffy, patchy opacity in one lung;
* ``Effusion``: fluid filling the base of one lung up to a meniscus that rises laterally, which blunts
  the costophrenic angle and hides the diaphragm dome on that side;
* ``Cardiomegaly``: the heart enlarged (cardiothoracic ratio about 0.6); the mask is the whole heart;
* ``Atelectasis``: a plate-like band of opacity in a lower zone;
* ``Pneumothorax``: a rim of one lung along the chest wall (lateral and apical) where the lung has
  collapsed: no lung markings, more lucent, bounded medially by a thin bright visceral pleural line.
  Sometimes two separate rims (two regions, two run-length rows in SIIM-ACR).

Each patient's anatomy comes from its own random stream, so follow-up images of one patient look alike
(which is why splits must be by patient); findings come from a second stream. Files are written
without metadata, so the same arguments give byte-identical PNG files.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from camcontrast_monai.data.cxr_readers import CHESTXRAY14_NO_FINDING, rle_encode

__all__ = [
    "CXR_FINDINGS",
    "CXRSample",
    "DATA_ENTRY_COLUMNS",
    "generate_cxr",
    "write_chestxray14_dataset",
    "write_siim_dataset",
]

# the findings drawn here, by their ChestX-ray14 names
CXR_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Mass", "Nodule", "Pneumothorax", "Consolidation")
# Data_Entry_2017.csv's header as the real file has it (the bracketed names contain commas)
DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
DATA_ENTRY_COLUMNS = tuple(next(csv.reader([DATA_ENTRY_HEADER])))
SIIM_HEADER = "ImageId, EncodedPixels"  # with the space of the real train-rle.csv
MIN_IMAGE_SIZE = 32

AIR, SOFT_TISSUE, LUNG, BONE, ABDOMEN = 8.0, 112.0, 52.0, 150.0, 128.0


@dataclass
class CXRSample:
    """One radiograph: ``image`` (H, W) uint8, one boolean mask per finding present, and its findings."""

    image: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def findings(self) -> list[str]:
        return [name for name in CXR_FINDINGS if name in self.masks]


@dataclass
class _Anatomy:
    lungs: tuple[tuple[float, float, float, float], ...]  # (centre u, centre v, half width, half height) per lung
    dome_drop: tuple[float, float]  # how far below the lung centre each costophrenic angle sits
    heart: tuple[float, float, float, float]
    hila: tuple[tuple[float, float], ...]
    rib_offset: float
    vessel_seed: int


def generate_cxr(image_size: int, findings: Sequence[str] = (), anatomy_seed: int = 0, finding_seed: int = 0) -> CXRSample:
    """Draw one radiograph of ``image_size`` x ``image_size`` pixels with ``findings`` (names from :data:`CXR_FINDINGS`)."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    unknown = [name for name in findings if name not in CXR_FINDINGS]
    if unknown:
        raise ValueError(f"unknown finding(s) {unknown}; expected names from {CXR_FINDINGS}")
    anatomy = _sample_anatomy(np.random.default_rng(anatomy_seed))
    rng = np.random.default_rng(finding_seed)
    v, u = (np.mgrid[0:image_size, 0:image_size] + 0.5) / image_size
    masks: dict[str, np.ndarray] = {}

    if "Cardiomegaly" in findings:
        cu, cv, hw, hh = anatomy.heart
        scale = rng.uniform(1.35, 1.5)
        anatomy.heart = (cu, cv - 0.01, hw * scale, hh * 1.15)
    lung_masks = [_lung_mask(u, v, lung, drop) for lung, drop in zip(anatomy.lungs, anatomy.dome_drop, strict=True)]
    lungs = lung_masks[0] | lung_masks[1]
    heart = _ellipse(u, v, anatomy.heart) <= 1.0

    pneumothorax = np.zeros_like(lungs)
    pleural_line = np.zeros(lungs.shape, dtype=np.float32)
    if "Pneumothorax" in findings:
        pneumothorax, pleural_line = _pneumothorax(rng, u, v, anatomy, lung_masks)
        masks["Pneumothorax"] = pneumothorax

    body = _ellipse(u, v, (0.5, 0.6, 0.45, 0.55)) <= 1.0
    neck = (np.abs(u - 0.5) < 0.09) & (v < 0.2)
    image = np.full(u.shape, AIR, dtype=np.float32)
    image[body | neck] = SOFT_TISSUE
    image[(v > 0.72) & body] = ABDOMEN
    image[lungs] = LUNG
    image += 18.0 * _smooth_noise(np.random.default_rng(anatomy.vessel_seed + 1), image_size, 6) * lungs
    image += 28.0 * _vessel_markings(np.random.default_rng(anatomy.vessel_seed), u, v, anatomy.hila) * (lungs & ~pneumothorax)
    image[pneumothorax] -= 14.0
    spine = (np.abs(u - 0.5) < 0.045) & body
    image = np.where(spine & ~lungs, BONE, image)
    image = np.where(heart & ~spine, np.maximum(image, 138.0), image)
    image += 34.0 * _ribs(u, v, anatomy.rib_offset) * body
    image += 55.0 * _clavicles(u, v)
    image += 60.0 * pleural_line

    for name in findings:
        if name == "Cardiomegaly":
            masks[name] = heart
        elif name in ("Nodule", "Mass"):
            masks[name] = _round_opacity(rng, image, u, v, lung_masks, radius=(0.02, 0.03) if name == "Nodule" else (0.05, 0.07))
        elif name == "Consolidation":
            masks[name] = _consolidation(rng, image, u, v, lung_masks, image_size)
        elif name == "Effusion":
            masks[name] = _effusion(rng, image, u, v, anatomy, lung_masks)
        elif name == "Atelectasis":
            masks[name] = _atelectasis(rng, image, u, v, lung_masks)
    image = ndimage.gaussian_filter(image, sigma=max(image_size / 512, 0.5))
    image += rng.normal(0.0, 2.5, image.shape)
    return CXRSample(image=np.clip(np.rint(image), 0, 255).astype(np.uint8), masks=masks)


def write_chestxray14_dataset(
    out: str | Path,
    n: int = 200,
    seed: int = 0,
    image_size: int = 256,
    abnormal_fraction: float = 0.5,
    test_fraction: float = 0.2,
    progress: bool = True,
) -> dict:
    """Write ``n`` radiographs in ChestX-ray14's layout and return a summary.

    Files: ``images/<patient:08d>_<follow-up:03d>.png``, ``Data_Entry_2017.csv`` (the real header and
    columns, ``Finding Labels`` joined by ``|`` or ``No Finding``), ``train_val_list.txt`` and
    ``test_list.txt`` (about ``test_fraction`` of the patients, all their images), and
    ``masks/<stem>.png``, the union of the image's finding masks (0/255), for measuring localisation.
    Patients have one to three images.
    """
    _check_fraction(abnormal_fraction, "abnormal_fraction")
    _check_fraction(test_fraction, "test_fraction")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, train_val, test = [], [], []
    patient, written = 0, 0
    bar = tqdm(total=n, desc="synthetic ChestX-ray14", unit="image", disable=not progress)
    while written < n:
        patient += 1
        on_test = rng.random() < test_fraction
        age, gender = int(rng.integers(18, 90)), str(rng.choice(["M", "F"]))
        for follow_up in range(min(int(rng.integers(1, 4)), n - written)):
            findings = _sample_findings(rng, abnormal_fraction)
            sample = generate_cxr(image_size, findings, anatomy_seed=seed * 100_003 + patient, finding_seed=int(rng.integers(2**31)))
            name = f"{patient:08d}_{follow_up:03d}.png"
            _save_png(sample.image, out / "images" / name)
            union = np.zeros(sample.image.shape, dtype=bool)
            for mask in sample.masks.values():
                union |= mask
            _save_png(union.astype(np.uint8) * 255, out / "masks" / name)
            labels = "|".join(sample.findings) or CHESTXRAY14_NO_FINDING
            rows.append([name, labels, follow_up, patient, age + follow_up, gender, "PA", image_size, image_size, 0.143, 0.143])
            (test if on_test else train_val).append(name)
            written += 1
            bar.update()
    bar.close()
    with (out / "Data_Entry_2017.csv").open("w", newline="") as file:
        file.write(DATA_ENTRY_HEADER + "\n")
        csv.writer(file, lineterminator="\n").writerows(rows)
    (out / "train_val_list.txt").write_text("".join(f"{name}\n" for name in train_val))
    (out / "test_list.txt").write_text("".join(f"{name}\n" for name in test))
    counts = {name: sum(name in row[1].split("|") for row in rows) for name in CXR_FINDINGS}
    return {"images": n, "patients": patient, "normal": sum(row[1] == CHESTXRAY14_NO_FINDING for row in rows), "findings": counts}


def write_siim_dataset(
    out: str | Path, n: int = 100, seed: int = 0, image_size: int = 256, pneumothorax_fraction: float = 0.5, progress: bool = True
) -> dict:
    """Write ``n`` radiographs in SIIM-ACR's layout and return a summary.

    Files: ``dicom-images-train/<study>/<series>/<ImageId>.dcm`` (8-bit MONOCHROME2, written with ITK) and
    ``train-rle.csv`` (header ``ImageId, EncodedPixels``; ``-1`` for no pneumothorax; one row per
    pneumothorax region, so an image with two regions has two rows). ``pneumothorax_fraction`` of the
    images have a pneumothorax; a third of the others have another finding.
    """
    import itk

    _check_fraction(pneumothorax_fraction, "pneumothorax_fraction")
    out = Path(out)
    rng = np.random.default_rng(seed)
    lines, regions = [SIIM_HEADER], 0
    for index in tqdm(range(n), desc="synthetic SIIM-ACR", unit="image", disable=not progress):
        image_id = f"1.2.276.0.7230010.3.1.4.8323329.{seed}.{index}"
        if rng.random() < pneumothorax_fraction:
            findings = ["Pneumothorax"]
        else:
            findings = [str(rng.choice([f for f in CXR_FINDINGS if f != "Pneumothorax"]))] if rng.random() < 1 / 3 else []
        sample = generate_cxr(image_size, findings, anatomy_seed=seed * 100_003 + 50_000 + index, finding_seed=int(rng.integers(2**31)))
        folder = out / "dicom-images-train" / f"{image_id}.1" / f"{image_id}.2"
        folder.mkdir(parents=True, exist_ok=True)
        itk.imwrite(itk.image_from_array(np.ascontiguousarray(sample.image)), str(folder / f"{image_id}.dcm"))
        if "Pneumothorax" in sample.masks:
            labelled, count = ndimage.label(sample.masks["Pneumothorax"])
            lines += [f"{image_id}, {rle_encode(labelled == region)}" for region in range(1, count + 1)]
            regions += count
        else:
            lines.append(f"{image_id}, -1")
    (out / "train-rle.csv").write_text("\n".join(lines) + "\n")
    return {"images": n, "pneumothorax_rows": regions, "empty": sum(line.endswith(", -1") for line in lines)}


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _sample_findings(rng: np.random.Generator, abnormal_fraction: float) -> list[str]:
    if rng.random() >= abnormal_fraction:
        return []
    count = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    chosen = set(rng.choice(len(CXR_FINDINGS), size=count, replace=False).tolist())
    if {CXR_FINDINGS.index("Nodule"), CXR_FINDINGS.index("Mass")} <= chosen:
        chosen.discard(CXR_FINDINGS.index("Nodule"))
    return [CXR_FINDINGS[i] for i in sorted(chosen)]


def _sample_anatomy(rng: np.random.Generator) -> _Anatomy:
    jitter = lambda scale: rng.uniform(-scale, scale)  # noqa: E731
    half_height = 0.26 + jitter(0.02)
    right = (0.32 + jitter(0.015), 0.44 + jitter(0.015), 0.135 + jitter(0.01), half_height)
    left = (0.68 + jitter(0.015), 0.45 + jitter(0.015), 0.125 + jitter(0.01), half_height - 0.005)
    heart = (0.55 + jitter(0.01), 0.56 + jitter(0.01), 0.13 + jitter(0.008), 0.095 + jitter(0.008))
    return _Anatomy(
        lungs=(right, left),
        dome_drop=(0.2 + jitter(0.03), 0.22 + jitter(0.03)),
        heart=heart,
        hila=((right[0] + 0.06, right[1] + 0.02), (left[0] - 0.06, left[1] + 0.03)),
        rib_offset=jitter(0.01),
        vessel_seed=int(rng.integers(2**31)),
    )


def _ellipse(u: np.ndarray, v: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    cu, cv, hw, hh = box
    return ((u - cu) / hw) ** 2 + ((v - cv) / hh) ** 2


def _lung_mask(u: np.ndarray, v: np.ndarray, lung: tuple[float, float, float, float], dome_drop: float) -> np.ndarray:
    """A lung: an ellipse cut from below by its diaphragm dome, which is highest at the lung's centre line
    and falls towards the sides, leaving a sharp costophrenic angle at the lateral lower corner."""
    cu, cv, hw, hh = lung
    tall = _ellipse(u, v, (cu, cv, hw, hh * 1.25)) <= 1.0
    dome = cv + hh * 0.55 + dome_drop * ((u - cu) / hw) ** 2 * 0.5
    return tall & (v < dome)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.random((cells, cells))
    return np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0


def _segment_distance(u: np.ndarray, v: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    direction = end - start
    t = np.clip(((u - start[0]) * direction[0] + (v - start[1]) * direction[1]) / max(float(direction @ direction), 1e-12), 0, 1)
    return np.hypot(u - start[0] - t * direction[0], v - start[1] - t * direction[1])


def _vessel_markings(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, hila: Sequence[tuple[float, float]]) -> np.ndarray:
    """Branching lines from each hilum, thinner and fainter towards the periphery."""
    markings = np.zeros(u.shape, dtype=np.float32)
    for side, hilum in enumerate(hila):
        outward = np.pi if side == 0 else 0.0
        for _ in range(7):
            angle = outward + rng.uniform(-1.6, 1.6)
            start = np.array(hilum)
            for depth in range(3):
                length = rng.uniform(0.05, 0.09)
                end = start + length * np.array([np.cos(angle), np.sin(angle)])
                width = 0.006 / (depth + 1)
                markings = np.maximum(markings, (1.0 - depth * 0.25) * np.exp(-((_segment_distance(u, v, start, end) / width) ** 2)))
                start, angle = end, angle + rng.uniform(-0.5, 0.5)
    return markings


def _ribs(u: np.ndarray, v: np.ndarray, offset: float) -> np.ndarray:
    """Posterior ribs: bands leaving the spine and curving down towards the chest wall."""
    lateral = np.abs(u - 0.5)
    ribs = np.zeros(u.shape, dtype=np.float32)
    for k in range(9):
        curve = 0.15 + offset + 0.062 * k + 0.9 * lateral**2 - 0.25 * lateral
        ribs = np.maximum(ribs, np.exp(-(((v - curve) / 0.011) ** 2)) * ((lateral > 0.05) & (lateral < 0.42)))
    return ribs


def _clavicles(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    left = _segment_distance(u, v, np.array([0.46, 0.19]), np.array([0.17, 0.13]))
    right = _segment_distance(u, v, np.array([0.54, 0.19]), np.array([0.83, 0.13]))
    return np.exp(-((np.minimum(left, right) / 0.013) ** 2))


def _random_point(rng: np.random.Generator, mask: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    candidates = np.flatnonzero(mask)
    index = candidates[rng.integers(candidates.size)]
    return float(u.flat[index]), float(v.flat[index])


def _round_opacity(rng, image, u, v, lung_masks, radius: tuple[float, float]) -> np.ndarray:
    lung = lung_masks[int(rng.integers(2))]
    r = rng.uniform(*radius)
    core = ndimage.binary_erosion(lung, iterations=max(1, int(r * u.shape[0])))
    cu, cv = _random_point(rng, core if core.any() else lung, u, v)
    distance = np.hypot(u - cu, v - cv) / r
    image += 55.0 * np.clip(1.3 - distance, 0, 1).clip(max=1.0) ** 0.5
    return distance <= 1.0


def _consolidation(rng, image, u, v, lung_masks, size: int) -> np.ndarray:
    lung = lung_masks[int(rng.integers(2))]
    cu, cv = _random_point(rng, lung, u, v)
    blob = _ellipse(u, v, (cu, cv, rng.uniform(0.06, 0.09), rng.uniform(0.06, 0.1)))
    patchy = _smooth_noise(rng, size, 12)
    mask = (blob + 0.8 * patchy < 1.1) & lung
    image += 48.0 * ndimage.gaussian_filter(mask.astype(np.float32), sigma=size / 200)
    return mask


def _effusion(rng, image, u, v, anatomy: _Anatomy, lung_masks) -> np.ndarray:
    side = int(rng.integers(2))
    cu, cv, hw, hh = anatomy.lungs[side]
    lateral = np.clip((u - cu) / hw * (-1 if side == 0 else 1), -1, 1.2)  # +1 at the chest wall
    level = cv + hh * rng.uniform(0.35, 0.7)
    meniscus = level - 0.025 * (lateral + 1) ** 2  # rises towards the chest wall
    mask = lung_masks[side] & (v > meniscus)
    below_lung = (v > meniscus) & (_ellipse(u, v, (cu, cv, hw * 1.05, hh * 1.6)) <= 1.0)
    image[mask | below_lung] = np.maximum(image[mask | below_lung], 120.0)
    return mask


def _atelectasis(rng, image, u, v, lung_masks) -> np.ndarray:
    lung = lung_masks[int(rng.integers(2))]
    lower = lung & (v > np.quantile(v[lung], 0.45))
    cu, cv = _random_point(rng, lower, u, v)
    angle = rng.uniform(-0.35, 0.35)
    half = rng.uniform(0.05, 0.08) * np.array([np.cos(angle), np.sin(angle)])
    band = _segment_distance(u, v, np.array([cu, cv]) - half, np.array([cu, cv]) + half) < rng.uniform(0.012, 0.02)
    mask = band & lung
    image[mask] += 42.0
    return mask


def _pneumothorax(rng, u, v, anatomy: _Anatomy, lung_masks) -> tuple[np.ndarray, np.ndarray]:
    """The collapsed rim of one lung (the mask) and its visceral pleural line (an intensity layer)."""
    side = int(rng.integers(2))
    cu, cv, hw, hh = anatomy.lungs[side]
    radius = np.sqrt(_ellipse(u, v, (cu, cv, hw, hh * 1.25)))
    # angle around the lung centre, 0 = towards the chest wall, pi/2 = towards the apex
    angle = np.arctan2(-(v - cv), (u - cu) * (-1 if side == 0 else 1))
    depth = rng.uniform(0.2, 0.4)
    if rng.random() < 0.3:
        arcs = [(-0.6, 0.15), (0.75, 1.6)]  # two separate regions: lateral and apical
    else:
        arcs = [(rng.uniform(-0.8, -0.2), rng.uniform(1.0, 1.9))]
    within = np.zeros(u.shape, dtype=bool)
    for low, high in arcs:
        within |= (angle > low) & (angle < high)
    mask = lung_masks[side] & within & (radius > 1.0 - depth)
    line = np.exp(-(((radius - (1.0 - depth)) / 0.012) ** 2)) * (lung_masks[side] & within)
    return mask, line.astype(np.float32)


def _save_png(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels).save(path, format="PNG", optimize=False, compress_level=6)
