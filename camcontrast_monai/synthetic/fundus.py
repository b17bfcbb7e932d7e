"""Synthetic colour fundus photographs with lesion masks and IDRiD/ODIR-style labels.

No real fundus data set can be downloaded where this package is tested, so the tests and the demo run
on photographs drawn here. Each image has a dark background outside a circular field of view (FOV), an
orange-red retina with uneven illumination, a branching vessel tree leaving the optic disc, an optic
disc with a cup, and a darker macula with a fovea ~2.5 disc diameters (DD) temporal of the disc. Right
eyes have the disc on the right of the image (the nasal side), left eyes are the exact mirror image.

Abnormal images carry small lesions, each with a per-pixel mask: microaneurysms (MA), haemorrhages
(HE, dot/blot and flame shaped), hard exudates (EX, clustered bright yellow spots) and soft exudates
(SE, pale fuzzy cotton-wool spots). Lesions only change the pixels they cover: the anatomy and the
lesions come from two separate random streams, so the normal and the abnormal version of one seed are
the same photograph apart from the lesions (no global colour shift tells the classes apart).

Labels (the grade is sampled first and the lesions are drawn to match it):

* DR grade (ISDR-like, as in IDRiD). Quadrants are the four 90-degree sectors around the FOV centre
  cut by the image's horizontal and vertical axes.

  - 0: no lesions at all.
  - 1 (mild NPDR): microaneurysms only.
  - 2 (moderate NPDR): microaneurysms plus at least one HE, EX or SE, with at most
    ``MODERATE_MAX_HAEMORRHAGES`` haemorrhages in total, so at least one quadrant has fewer than
    ``SEVERE_HAEMORRHAGES_PER_QUADRANT``.
  - 3 (severe NPDR): at least ``SEVERE_HAEMORRHAGES_PER_QUADRANT`` haemorrhages in every quadrant,
    no neovascularisation.
  - 4 (PDR): neovascularisation at the disc (tufts of fine tortuous vessels within ~1.5 DD of the disc
    centre, drawn into the ``vessels`` mask) on top of a moderate or severe background.

* Risk of macular oedema (DME), from hard exudates only; "near" means an EX mask pixel centre within
  one disc diameter of the macula centre.

  - 0: no hard exudates (always the case for DR 0 and DR 1).
  - 1: hard exudates present, none near the macula.
  - 2: hard exudates near the macula.

* Coarse label: 0 (normal) iff DR 0 and DME 0, i.e. every lesion mask is empty; 1 (abnormal) otherwise.
  Abnormal images always have DR >= 1 (every abnormal image has microaneurysms).

``write_fundus_dataset`` writes such images in the layouts of ODIR-5K (patients with a left and a
right eye, ``{id}_left.png``; keywords from ``DR_KEYWORDS``; N = 1 iff every eye of the patient is
normal, D = 1 iff any eye has DR), IDRiD (grading CSV, lesion masks) and a generic ``image,label`` CSV.
Everything is seeded, and files are written with fixed encoder options and no metadata, so the same
arguments give byte-identical files.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "DR_KEYWORDS",
    "FundusSample",
    "GENERATOR_VERSION",
    "IDRID_COLUMNS",
    "LABELS_COLUMNS",
    "LESION_TYPES",
    "MASK_NAMES",
    "MODERATE_MAX_HAEMORRHAGES",
    "ODIR_COLUMNS",
    "SEVERE_HAEMORRHAGES_PER_QUADRANT",
    "class_counts",
    "generate_fundus",
    "write_fundus_dataset",
]

GENERATOR_VERSION = "1.0"
MIN_IMAGE_SIZE = 64
MIN_CUP_TO_DISC, MAX_CUP_TO_DISC = 0.2, 0.8
IMAGE_FORMATS = ("png", "jpg")
EYES = ("left", "right")

LESION_TYPES = ("MA", "HE", "EX", "SE")
MASK_NAMES = (*LESION_TYPES, "OD", "OC", "vessels")

SEVERE_HAEMORRHAGES_PER_QUADRANT = 4
# Fewer than 4 quadrants x SEVERE_HAEMORRHAGES_PER_QUADRANT, so a moderate image can never look severe.
MODERATE_MAX_HAEMORRHAGES = 10

DR_KEYWORDS = {
    0: "normal fundus",
    1: "mild nonproliferative retinopathy",
    2: "moderate non proliferative retinopathy",
    3: "severe nonproliferative retinopathy",
    4: "proliferative diabetic retinopathy",
}
ODIR_COLUMNS = (
    "ID",
    "Patient Age",
    "Patient Sex",
    "Left-Fundus",
    "Right-Fundus",
    "Left-Diagnostic Keywords",
    "Right-Diagnostic Keywords",
    "N",
    "D",
    "G",
    "C",
    "A",
    "H",
    "M",
    "O",
)
# The real IDRiD grading file's last header ends in a space.
IDRID_COLUMNS = ("Image name", "Retinopathy grade", "Risk of macular edema ")
LABELS_COLUMNS = ("image", "label")

# zlib level 3 is ~5x faster than the default 6 on noisy photographs for ~10 % larger files
PNG_COMPRESS_LEVEL = 3
JPEG_QUALITY = 95

# Tags that keep the seeded random streams of write_fundus_dataset apart: SeedSequence([seed, tag, i]).
_IMAGE_STREAM, _PATIENT_STREAM, _CLASS_STREAM = 0, 1, 2

# Abnormal images: P(DR grade 1..4), and P(DME 0..2) for DR >= 2 (DR 1 has no exudates).
_ABNORMAL_DR_PROBABILITIES = (0.25, 0.35, 0.2, 0.2)
_DME_PROBABILITIES = (0.4, 0.3, 0.3)

# Colours (RGB, 0-255) at full illumination.
_RETINA_RGB = np.array([212.0, 92.0, 40.0], np.float32)
_DISC_RIM_RGB = np.array([240.0, 180.0, 112.0], np.float32)
_CUP_RGB = np.array([253.0, 232.0, 178.0], np.float32)
_VEIN_RGB = np.array([122.0, 28.0, 20.0], np.float32)
_ARTERY_RGB = np.array([158.0, 44.0, 28.0], np.float32)
_NEOVESSEL_RGB = np.array([140.0, 34.0, 26.0], np.float32)
_LESION_RGB = {
    "MA": (118.0, 20.0, 14.0),
    "HE": (108.0, 18.0, 12.0),
    "EX": (250.0, 228.0, 110.0),
    "SE": (236.0, 212.0, 172.0),
}

# Smallest semi-axis in pixels whose mask (d <= 1) is guaranteed to hold the pixel nearest the centre
# (a pixel centre is never further than sqrt(0.5) ~ 0.707 px away).
_MIN_MASK_RADIUS_PX = 0.75

# Vessel growth, in units of the FOV radius R unless stated otherwise.
_VESSEL_STEP = 0.02
_VESSEL_WIGGLE = 0.07  # std of the heading change per step, radians
_VESSEL_TAPER = (0.99, 0.982, 0.975, 0.97)  # width factor per step, by depth: side branches end sooner
_VESSEL_MIN_WIDTH = 0.0035
_BRANCH_PROBABILITY = (0.09, 0.06, 0.04)  # per step, by depth; the deepest branches do not branch
_FOVEAL_AVASCULAR_RADIUS_DD = 0.35


@dataclass
class FundusSample:
    """One synthetic fundus photograph with its ground truth.

    Points are ``(x, y)`` = (column, row) in pixels of ``image``. ``masks`` maps every name in
    ``MASK_NAMES`` to a boolean (H, W) array. ``lesion_counts`` gives the number of drawn lesions per type
    (``MA``, ``HE``, ``EX``, ``SE``, ``NV`` = neovascular tufts) and ``haemorrhages_per_quadrant`` the HE
    count in the (lower-right, lower-left, upper-left, upper-right) quadrant around ``fov_center``, as the
    image is shown (row 0 at the top). ``cup_to_disc`` is the cup's diameter over the disc's, along both axes.
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    dr_grade: int
    dme_risk: int
    label: int
    macula_center: tuple[float, float]
    disc_center: tuple[float, float]
    disc_diameter: float
    fov_center: tuple[float, float]
    fov_radius: float
    eye: str
    lesion_counts: dict[str, int] = field(default_factory=dict)
    haemorrhages_per_quadrant: tuple[int, int, int, int] = (0, 0, 0, 0)
    cup_to_disc: float = math.nan


@dataclass
class _Anatomy:
    """Geometry and colouring of one eye in the right-eye frame (disc on the right, temporal = -x)."""

    size: int
    fov_center: np.ndarray
    fov_radius: float
    disc_center: np.ndarray
    disc_diameter: float
    disc_semi_axes: tuple[float, float]
    cup_center: np.ndarray
    cup_semi_axes: tuple[float, float]
    macula_center: np.ndarray
    illumination_center: np.ndarray
    illumination_falloff: float
    brightness: float
    retina_rgb: np.ndarray


@dataclass
class _Sprout:
    """Where a vessel starts growing: it turns by at most ``bend_rate`` per step towards ``bend_target``."""

    kind: str  # "artery" or "vein"; branches keep their parent's kind
    start: tuple[float, float]
    heading: float
    width: float
    depth: int = 0
    bend_target: float | None = None  # None: no preferred heading, a random walk around the start heading
    bend_rate: float = 0.0


@dataclass
class _Vessel:
    """A polyline with a width (pixels) at every point."""

    kind: str
    points: np.ndarray
    widths: np.ndarray


@dataclass
class _Lesion:
    """A wobbly ellipse with a soft edge; its mask is the outline before softening."""

    kind: str
    center: tuple[float, float]
    semi_axes: tuple[float, float]
    angle: float
    softness: float  # half-width of the soft edge, in units of the (normalised) radius
    opacity: float
    irregularity: float  # the outline radius varies within [1 - irregularity, 1 + irregularity]
    harmonics: tuple[tuple[float, float], ...] = ()  # (amplitude, phase) of outline harmonics 2, 3, ...


@dataclass
class _LesionPlan:
    """How many lesions of each type one image gets."""

    microaneurysms: int
    haemorrhages_per_quadrant: tuple[int, int, int, int]
    soft_exudates: int
    exudate_clusters: int
    neovascular_tufts: int


def class_counts(n: int, class_ratio: float = 0.8) -> tuple[int, int]:
    """``(n_normal, n_abnormal)`` for ``n`` images with normal/abnormal = ``class_ratio`` (minority/majority).

    ``n_normal`` is ``n * class_ratio / (1 + class_ratio)`` rounded to the nearest integer, ties going to
    the abnormal majority.
    """
    _check_count_and_ratio(n, class_ratio)
    exact_normal = round(n * class_ratio / (1.0 + class_ratio), 9)
    n_normal = math.ceil(exact_normal - 0.5)
    return n_normal, n - n_normal


def generate_fundus(
    rng_or_seed: int | np.random.SeedSequence | np.random.Generator,
    image_size: int = 256,
    abnormal: bool = False,
    eye: str = "right",
    dr_grade: int | None = None,
    dme_risk: int | None = None,
    cup_to_disc: float | None = None,
) -> FundusSample:
    """Draw one fundus photograph of ``image_size`` x ``image_size`` pixels.

    ``rng_or_seed`` is an int seed, a ``SeedSequence`` or a ``Generator``; two child streams are spawned
    from it, one for the anatomy and one for the lesions, so the same seed with ``abnormal`` False/True
    gives the same eye with and without lesions. For abnormal images the DR grade (1-4) and the DME risk
    are sampled unless given; they must then be consistent with ``abnormal`` (DR 1 has DME 0).
    ``cup_to_disc`` (0.2-0.8) sets the cup's diameter relative to the disc instead of the drawn 0.3-0.5;
    everything else about the eye stays as the seed draws it (a glaucomatous cup is larger).
    """
    image_size = _check_image_size(image_size)
    if eye not in EYES:
        raise ValueError(f"eye must be one of {EYES}, got {eye!r}")
    if cup_to_disc is not None and not MIN_CUP_TO_DISC <= cup_to_disc <= MAX_CUP_TO_DISC:
        raise ValueError(f"cup_to_disc must be in [{MIN_CUP_TO_DISC}, {MAX_CUP_TO_DISC}], got {cup_to_disc}")
    anatomy_rng, lesion_rng = _spawn_streams(rng_or_seed)
    dr_grade, dme_risk = _resolve_grades(lesion_rng, bool(abnormal), dr_grade, dme_risk)

    anatomy = _sample_anatomy(anatomy_rng, image_size, cup_to_disc)
    image, illumination = _render_retina(anatomy_rng, anatomy)
    optic_disc, optic_cup = _paint_optic_disc(image, illumination, anatomy)

    supersampling = max(2, min(4, 2048 // image_size))
    veins, arteries = _vessel_tree_coverage(anatomy_rng, anatomy, supersampling)
    vessel_coverage = np.maximum(veins, arteries)
    plan = _plan_lesions(lesion_rng, dr_grade, dme_risk)
    neovessels = _rasterise(
        _neovascular_tufts(lesion_rng, anatomy, plan.neovascular_tufts), image_size, supersampling
    )
    _paint(image, illumination, veins * 0.9, _VEIN_RGB)
    _paint(image, illumination, arteries * 0.8, _ARTERY_RGB)
    _paint(image, illumination, neovessels * 0.85, _NEOVESSEL_RGB)

    lesions = _place_lesions(lesion_rng, anatomy, plan, dme_risk, vessel_coverage)
    lesion_masks = _stamp_lesions(image, illumination, lesions)
    pixels, fov = _expose(anatomy_rng, image, anatomy)
    masks = {
        **lesion_masks,
        "OD": optic_disc,
        "OC": optic_cup,
        "vessels": np.maximum(vessel_coverage, neovessels) >= 0.5,
    }
    right_eye = FundusSample(
        image=pixels,
        masks={name: masks[name] & fov for name in MASK_NAMES},
        dr_grade=dr_grade,
        dme_risk=dme_risk,
        label=int(dr_grade > 0 or dme_risk > 0),
        macula_center=_as_point(anatomy.macula_center),
        disc_center=_as_point(anatomy.disc_center),
        disc_diameter=anatomy.disc_diameter,
        fov_center=_as_point(anatomy.fov_center),
        fov_radius=anatomy.fov_radius,
        eye="right",
        lesion_counts=_lesion_counts(lesions, plan),
        haemorrhages_per_quadrant=plan.haemorrhages_per_quadrant,
        cup_to_disc=anatomy.cup_semi_axes[0] / anatomy.disc_semi_axes[0],
    )
    # everything is drawn as a right eye; a left eye is its mirror image
    return _mirrored_to_left_eye(right_eye) if eye == "left" else right_eye


def write_fundus_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    image_size: int = 256,
    class_ratio: float = 0.8,
    image_format: str = "png",
    num_workers: int | None = None,
) -> dict:
    """Write ``n`` synthetic fundus photographs with masks and annotation sheets under ``out_dir``.

    Image ``i`` is eye ``("left", "right")[i % 2]`` of patient ``i // 2`` and is drawn from the stream
    ``SeedSequence([seed, 0, i])``, so it does not depend on ``n`` or on ``num_workers``; which images are
    normal is a seeded choice of exactly ``class_counts(n, class_ratio)[0]`` indices. ``num_workers``
    processes draw the images (default: one per CPU core, at most 8; 0 draws them in this process): a
    448-px photograph costs about 0.2 s of one core. Layout::

        images/{pid}_{left|right}.{png|jpg}
        masks/{MA,HE,EX,SE,OD,OC,vessels}/{stem}.png   8-bit, 0/255
        odir_annotations.csv   ODIR-5K sheet, one row per patient
        idrid_grading.csv      IDRiD disease grading ("Image name" = stem)
        labels.csv             image (relative to out_dir), label
        manifest.json          parameters, class counts and per-image labels, lesion sizes, geometry

    Returns the manifest dict.
    """
    n_normal, n_abnormal = class_counts(n, class_ratio)
    image_size = _check_dataset_arguments(seed, image_size, image_format)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for name in MASK_NAMES:
        (out_dir / "masks" / name).mkdir(parents=True, exist_ok=True)

    class_rng = np.random.Generator(np.random.PCG64([seed, _CLASS_STREAM, n]))
    normal_indices = set(class_rng.choice(n, size=n_normal, replace=False).tolist())
    draw = functools.partial(_write_photograph, out_dir, seed, image_size=image_size, image_format=image_format)
    abnormal = [index not in normal_indices for index in range(n)]
    workers = min(os.cpu_count() or 1, 8) if num_workers is None else num_workers
    if workers > 1 and n > 1:
        # fork: the drawing code is numpy and PIL only, and a forked worker starts without re-importing the package
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ProcessPoolExecutor(min(workers, n), mp_context=context) as pool:
            records = list(pool.map(draw, range(n), abnormal, chunksize=max(1, n // (4 * workers))))
    else:
        records = list(map(draw, range(n), abnormal))
    _write_sheets(out_dir, records, seed)

    manifest = {
        "generator": __name__,
        "generator_version": GENERATOR_VERSION,
        "parameters": {
            "n": n,
            "seed": seed,
            "image_size": image_size,
            "class_ratio": class_ratio,
            "image_format": image_format,
        },
        "class_counts": {"normal": n_normal, "abnormal": n_abnormal},
        "dr_grade_counts": {str(g): sum(r["dr_grade"] == g for r in records) for g in DR_KEYWORDS},
        "dme_risk_counts": {str(d): sum(r["dme_risk"] == d for r in records) for d in range(3)},
        "images": records,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# ---------------------------------------------------------------------------------------------------
# argument handling


def _check_count_and_ratio(n: int, class_ratio: float) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(class_ratio, (int, float)) or not 0.0 < class_ratio <= 1.0:
        raise ValueError(
            f"class_ratio must be in (0, 1] (minority count / majority count), got {class_ratio!r}"
        )


def _check_image_size(image_size: int) -> int:
    if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool):
        raise ValueError(f"image_size must be an integer, got {image_size!r}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE} pixels, got {image_size}")
    return int(image_size)


def _check_dataset_arguments(seed: int, image_size: int, image_format: str) -> int:
    """Refuse a bad ``seed``, ``image_size`` or ``image_format``; return ``image_size`` as an int."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    image_size = _check_image_size(image_size)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    return image_size


def _spawn_streams(
    rng_or_seed: int | np.random.SeedSequence | np.random.Generator,
) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent (anatomy, lesion) generators."""
    if isinstance(rng_or_seed, np.random.Generator):
        anatomy_rng, lesion_rng = rng_or_seed.spawn(2)
        return anatomy_rng, lesion_rng
    if isinstance(rng_or_seed, np.random.SeedSequence):
        seed_sequence = rng_or_seed
    elif (
        isinstance(rng_or_seed, (int, np.integer)) and not isinstance(rng_or_seed, bool) and rng_or_seed >= 0
    ):
        seed_sequence = np.random.SeedSequence(int(rng_or_seed))
    else:
        raise ValueError(
            f"rng_or_seed must be a non-negative int, a SeedSequence or a Generator, got {rng_or_seed!r}"
        )
    anatomy_rng, lesion_rng = (
        np.random.Generator(np.random.PCG64(child)) for child in seed_sequence.spawn(2)
    )
    return anatomy_rng, lesion_rng


def _resolve_grades(
    rng: np.random.Generator, abnormal: bool, dr_grade: int | None, dme_risk: int | None
) -> tuple[int, int]:
    if not abnormal:
        if dr_grade not in (None, 0) or dme_risk not in (None, 0):
            raise ValueError(
                f"a normal image has DR grade 0 and DME risk 0, got dr_grade={dr_grade}, dme_risk={dme_risk}"
            )
        return 0, 0
    if dr_grade is None:
        dr_grade = int(rng.choice([1, 2, 3, 4], p=_ABNORMAL_DR_PROBABILITIES))
    elif dr_grade not in (1, 2, 3, 4):
        raise ValueError(f"an abnormal image has a DR grade from 1 to 4, got {dr_grade!r}")
    if dme_risk is None:
        dme_risk = 0 if dr_grade == 1 else int(rng.choice(3, p=_DME_PROBABILITIES))
    elif dme_risk not in (0, 1, 2) or (dr_grade == 1 and dme_risk != 0):
        raise ValueError(
            f"dme_risk must be 0, 1 or 2, and 0 for DR grade 1 (microaneurysms only); got dme_risk={dme_risk!r} "
            f"with dr_grade={dr_grade}"
        )
    return dr_grade, dme_risk


# ---------------------------------------------------------------------------------------------------
# anatomy


def _sample_anatomy(rng: np.random.Generator, size: int, cup_to_disc: float | None = None) -> _Anatomy:
    fov_radius = size * 0.45 * rng.uniform(0.97, 1.03)
    fov_center = size / 2 - 0.5 + rng.uniform(-0.015, 0.015, 2) * size
    disc_diameter = 0.27 * fov_radius * rng.uniform(0.92, 1.08)
    disc_center = fov_center + np.array([rng.uniform(0.36, 0.46), rng.uniform(-0.06, 0.06)]) * fov_radius
    # the fovea sits ~2.5 DD temporal of the disc and slightly below it
    disc_to_macula = math.radians(rng.uniform(4.0, 9.0))
    macula_distance = disc_diameter * rng.uniform(2.35, 2.65)
    macula_center = disc_center + macula_distance * np.array(
        [-math.cos(disc_to_macula), math.sin(disc_to_macula)]
    )
    disc_semi_axes = (
        disc_diameter / 2 * rng.uniform(0.92, 0.98),
        disc_diameter / 2 * rng.uniform(1.02, 1.08),
    )
    # a cup no wider than 0.8 of the disc and shifted by at most a tenth of it stays inside the disc; the
    # ratio is drawn even when it is given, so the rest of the eye is the one the seed draws
    drawn_cup_to_disc = rng.uniform(0.3, 0.5)
    cup_to_disc = drawn_cup_to_disc if cup_to_disc is None else cup_to_disc
    cup_semi_axes = (disc_semi_axes[0] * cup_to_disc, disc_semi_axes[1] * cup_to_disc)
    cup_center = disc_center + rng.uniform(-0.1, 0.1, 2) * np.array(disc_semi_axes)
    hue_gain = np.array([rng.uniform(0.93, 1.04), rng.uniform(0.82, 1.15), rng.uniform(0.7, 1.3)], np.float32)
    return _Anatomy(
        size=size,
        fov_center=fov_center,
        fov_radius=fov_radius,
        disc_center=disc_center,
        disc_diameter=disc_diameter,
        disc_semi_axes=disc_semi_axes,
        cup_center=cup_center,
        cup_semi_axes=cup_semi_axes,
        macula_center=macula_center,
        illumination_center=fov_center + rng.normal(0.0, 0.08, 2) * fov_radius,
        illumination_falloff=rng.uniform(0.3, 0.45),
        brightness=rng.uniform(0.88, 1.1),
        retina_rgb=_RETINA_RGB * hue_gain,
    )


def _render_retina(rng: np.random.Generator, anatomy: _Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Float RGB retina (no disc, vessels or FOV cut yet) and the illumination map that lights it all."""
    size, radius = anatomy.size, anatomy.fov_radius
    from_light = _disc_distance(size, anatomy.illumination_center) / radius
    illumination = anatomy.brightness * (
        1.0 - anatomy.illumination_falloff * from_light**2 - 0.2 * np.clip(from_light, 0, 1.2) ** 8
    )
    illumination = np.maximum(illumination, 0.15).astype(np.float32)
    # choroidal texture at two scales
    texture = 1.0 + 0.06 * _smooth_noise(rng, size, 5) + 0.025 * _smooth_noise(rng, size, 24)

    from_macula = _disc_distance(size, anatomy.macula_center) / anatomy.disc_diameter
    macula_shade = (
        1.0
        - 0.3 * np.exp(-(from_macula**2) / (2 * 0.55**2))
        - 0.15 * np.exp(-(from_macula**2) / (2 * 0.12**2))
    )
    from_disc = _disc_distance(size, anatomy.disc_center) / anatomy.disc_diameter
    peripapillary_glow = 1.0 + 0.12 * np.exp(-(from_disc**2) / (2 * 0.8**2))

    shade = illumination * texture * macula_shade * peripapillary_glow
    image = shade[..., None] * anatomy.retina_rgb
    return image.astype(np.float32), illumination


def _paint_optic_disc(
    image: np.ndarray, illumination: np.ndarray, anatomy: _Anatomy
) -> tuple[np.ndarray, np.ndarray]:
    """Paint the disc and cup; return their masks."""
    disc_distance = _ellipse_distance(anatomy.size, anatomy.disc_center, anatomy.disc_semi_axes)
    cup_distance = _ellipse_distance(anatomy.size, anatomy.cup_center, anatomy.cup_semi_axes)
    # the disc is lit by the flash almost independently of the periphery's falloff
    disc_light = (0.55 + 0.45 * illumination)[..., None]
    disc_alpha = _smoothstep(1.12, 0.85, disc_distance)[..., None]
    image += disc_alpha * (_DISC_RIM_RGB * disc_light - image)
    cup_alpha = _smoothstep(1.25, 0.6, cup_distance)[..., None]
    image += cup_alpha * (_CUP_RGB * disc_light - image)
    return disc_distance <= 1.0, cup_distance <= 1.0


def _vessel_tree_coverage(
    rng: np.random.Generator, anatomy: _Anatomy, supersampling: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (0-1) of the veins and of the arteries that leave the optic disc."""
    vessel_tree = _grow_vessels(rng, _main_vessel_sprouts(rng, anatomy), anatomy)
    veins = _rasterise([v for v in vessel_tree if v.kind == "vein"], anatomy.size, supersampling)
    arteries = _rasterise([v for v in vessel_tree if v.kind == "artery"], anatomy.size, supersampling)
    return veins, arteries


def _main_vessel_sprouts(rng: np.random.Generator, anatomy: _Anatomy) -> list[_Sprout]:
    """The vessels leaving the disc: temporal arcades, nasal vessels and small macular/nasal branches.

    Headings are in radians in image coordinates (y down), in the right-eye frame: 0 points nasal, pi
    temporal. ``side`` is -1 for the superior and +1 for the inferior half.
    """
    radius, disc_diameter = anatomy.fov_radius, anatomy.disc_diameter
    step = _VESSEL_STEP * radius
    disc_center = (float(anatomy.disc_center[0]), float(anatomy.disc_center[1]))
    sprouts = []
    for side in (-1, 1):
        for kind, width in (("vein", 0.021 * radius), ("artery", 0.016 * radius)):
            start = tuple(anatomy.disc_center + rng.normal(0.0, 0.08, 2) * disc_diameter)
            # the arcade leaves the disc vertically, bends round the macula ~2 DD away, then runs
            # temporally towards the horizontal raphe
            arcade = _Sprout(
                kind,
                start,
                heading=side * math.radians(rng.uniform(92, 108)),
                width=width * rng.uniform(0.9, 1.1),
                bend_target=math.pi + side * math.radians(rng.uniform(5, 15)),
                bend_rate=step / (disc_diameter * rng.uniform(1.7, 2.3)),
            )
            nasal = _Sprout(
                kind,
                start,
                heading=side * math.radians(rng.uniform(40, 70)),
                width=0.8 * width * rng.uniform(0.9, 1.1),
                bend_target=side * math.radians(rng.uniform(15, 35)),
                bend_rate=step / (3 * disc_diameter),
            )
            sprouts += [arcade, nasal]
        macular_heading = math.pi + side * math.radians(rng.uniform(8, 25))
        sprouts.append(_Sprout("artery", disc_center, macular_heading, width=0.007 * radius, depth=1))
    sprouts.append(_Sprout("vein", disc_center, rng.normal(0.0, 0.15), width=0.008 * radius, depth=1))
    return sprouts


def _grow_vessels(rng: np.random.Generator, sprouts: list[_Sprout], anatomy: _Anatomy) -> list[_Vessel]:
    """Grow every sprout into a polyline, branching as it goes."""
    radius = anatomy.fov_radius
    step = _VESSEL_STEP * radius
    min_width = _VESSEL_MIN_WIDTH * radius
    fovea_exclusion = _FOVEAL_AVASCULAR_RADIUS_DD * anatomy.disc_diameter
    fov_x, fov_y = anatomy.fov_center
    fovea_x, fovea_y = anatomy.macula_center

    vessels = []
    pending = list(reversed(sprouts))
    while pending:
        sprout = pending.pop()
        bend_target = sprout.heading if sprout.bend_target is None else sprout.bend_target
        x, y = sprout.start
        heading, width = sprout.heading, sprout.width
        points, widths = [(x, y)], [width]
        while True:
            turn = _wrap_angle(bend_target - heading)
            heading += max(-sprout.bend_rate, min(sprout.bend_rate, turn)) + rng.normal(0.0, _VESSEL_WIGGLE)
            x += step * math.cos(heading)
            y += step * math.sin(heading)
            width *= _VESSEL_TAPER[sprout.depth]
            if (
                width < min_width
                or math.hypot(x - fov_x, y - fov_y) > 0.98 * radius
                or math.hypot(x - fovea_x, y - fovea_y) < fovea_exclusion
            ):
                break
            points.append((x, y))
            widths.append(width)
            if sprout.depth < len(_BRANCH_PROBABILITY) and rng.random() < _BRANCH_PROBABILITY[sprout.depth]:
                branch_heading = heading + rng.choice((-1.0, 1.0)) * rng.uniform(0.45, 1.05)
                branch_width = width * rng.uniform(0.5, 0.75)
                pending.append(_Sprout(sprout.kind, (x, y), branch_heading, branch_width, sprout.depth + 1))
                width *= 0.9  # the parent narrows past a branch point
        if len(points) > 1:
            vessels.append(_Vessel(sprout.kind, np.array(points), np.array(widths)))
    return vessels


def _neovascular_tufts(rng: np.random.Generator, anatomy: _Anatomy, count: int) -> list[_Vessel]:
    """``count`` tufts of fine, tortuous new vessels on and around the disc (proliferative DR)."""
    radius, disc_diameter = anatomy.fov_radius, anatomy.disc_diameter
    step = 0.012 * radius
    # wide enough (>= 1.3 px) to reach the vessel mask's 50 % coverage threshold
    width = max(0.006 * radius, 1.3)
    loops = []
    for _ in range(count):
        origin = anatomy.disc_center + rng.uniform(0.3, 0.9) * disc_diameter * _unit(
            rng.uniform(0, 2 * math.pi)
        )
        for _ in range(rng.integers(3, 7)):
            x, y = origin
            heading = rng.uniform(0, 2 * math.pi)
            points = [(x, y)]
            for _ in range(rng.integers(12, 26)):
                heading += rng.normal(0.0, 0.6)
                x += step * math.cos(heading)
                y += step * math.sin(heading)
                if math.hypot(x - anatomy.disc_center[0], y - anatomy.disc_center[1]) > 1.5 * disc_diameter:
                    break
                points.append((x, y))
            loops.append(_Vessel("neovessel", np.array(points), np.full(len(points), width)))
    return loops


# ---------------------------------------------------------------------------------------------------
# lesions


def _plan_lesions(rng: np.random.Generator, dr_grade: int, dme_risk: int) -> _LesionPlan:
    """How many lesions of each type an image of this grade gets (see the module docstring's rules)."""
    if dr_grade == 0:
        return _LesionPlan(0, (0, 0, 0, 0), 0, 0, 0)
    if dr_grade == 1:
        return _LesionPlan(int(rng.integers(2, 11)), (0, 0, 0, 0), 0, 0, 0)

    severe_background = dr_grade == 3 or (dr_grade == 4 and rng.random() < 0.5)
    if severe_background:
        per_quadrant = rng.integers(SEVERE_HAEMORRHAGES_PER_QUADRANT, SEVERE_HAEMORRHAGES_PER_QUADRANT + 4, 4)
        soft_exudates = int(rng.integers(1, 6)) if rng.random() < 0.6 else 0
    else:
        haemorrhages = int(rng.integers(1, MODERATE_MAX_HAEMORRHAGES + 1)) if rng.random() < 0.75 else 0
        soft_exudates = int(rng.integers(1, 5)) if rng.random() < 0.4 else 0
        if haemorrhages == 0 and soft_exudates == 0 and dme_risk == 0:
            haemorrhages = int(rng.integers(1, MODERATE_MAX_HAEMORRHAGES + 1))  # moderate needs more than MA
        per_quadrant = rng.multinomial(haemorrhages, [0.25] * 4)
    return _LesionPlan(
        microaneurysms=int(rng.integers(4, 21)),
        haemorrhages_per_quadrant=tuple(int(count) for count in per_quadrant),
        soft_exudates=soft_exudates,
        exudate_clusters=0 if dme_risk == 0 else int(rng.integers(1, 4)),
        neovascular_tufts=int(rng.integers(2, 5)) if dr_grade == 4 else 0,
    )


_SiteFilter = Callable[[np.ndarray], bool]


class _SiteSampler:
    """Rejection-samples lesion centres inside 0.85 R, off the optic disc and off the larger vessels."""

    max_tries = 10_000

    def __init__(self, rng: np.random.Generator, anatomy: _Anatomy, vessel_coverage: np.ndarray):
        self.rng = rng
        self.anatomy = anatomy
        self.vessel_coverage = vessel_coverage

    def anywhere(self, quadrant: int | None = None, keep: _SiteFilter | None = None) -> np.ndarray:
        """Uniform over the usable FOV or one quadrant: 0-3 = lower-right, lower-left, upper-left, upper-right."""
        low, span = (0.0, 2 * math.pi) if quadrant is None else (quadrant * math.pi / 2, math.pi / 2)

        def propose() -> np.ndarray:
            distance = 0.85 * self.anatomy.fov_radius * math.sqrt(self.rng.random())
            return self.anatomy.fov_center + distance * _unit(self.rng.uniform(low, low + span))

        return self._sample(propose, keep)

    def around(self, centre: np.ndarray, spread: float, keep: _SiteFilter | None = None) -> np.ndarray:
        return self._sample(lambda: centre + self.rng.normal(0.0, spread, 2), keep)

    def on_ring(self, centre: np.ndarray, ring_radius: float, keep: _SiteFilter | None = None) -> np.ndarray:
        return self._sample(
            lambda: (
                centre + ring_radius * self.rng.uniform(0.85, 1.15) * _unit(self.rng.uniform(0, 2 * math.pi))
            ),
            keep,
        )

    def _sample(self, propose: Callable[[], np.ndarray], keep: _SiteFilter | None) -> np.ndarray:
        anatomy = self.anatomy
        for _ in range(self.max_tries):
            point = propose()
            if (
                np.linalg.norm(point - anatomy.fov_center) <= 0.85 * anatomy.fov_radius
                and np.linalg.norm(point - anatomy.disc_center) > 0.9 * anatomy.disc_diameter
                and self.vessel_coverage[_pixel_index(point, anatomy.size)] < 0.35
                and (keep is None or keep(point))
            ):
                return point
        raise RuntimeError(f"no lesion site found in {self.max_tries} tries; the proposal region is unusable")


def _place_lesions(
    rng: np.random.Generator,
    anatomy: _Anatomy,
    plan: _LesionPlan,
    dme_risk: int,
    vessel_coverage: np.ndarray,
) -> list[_Lesion]:
    """Lesions in drawing order: soft exudates, hard exudates, haemorrhages, microaneurysms."""
    radius = anatomy.fov_radius
    sites = _SiteSampler(rng, anatomy, vessel_coverage)
    # the posterior pole, between the disc and the macula
    posterior_pole = (anatomy.macula_center + anatomy.disc_center) / 2

    lesions = []
    for _ in range(plan.soft_exudates):
        size = rng.uniform(0.035, 0.06) * radius
        lesions.append(
            _lesion(
                rng,
                "SE",
                sites.around(posterior_pole, 0.3 * radius),
                (size, size * rng.uniform(0.6, 0.9)),
                softness=0.75,
                opacity=0.55,
                irregularity=0.2,
            )
        )
    lesions += _hard_exudates(rng, anatomy, sites, plan.exudate_clusters, dme_risk)
    for quadrant, count in enumerate(plan.haemorrhages_per_quadrant):
        lesions += [_haemorrhage(rng, anatomy, sites.anywhere(quadrant)) for _ in range(count)]
    for _ in range(plan.microaneurysms):
        # microaneurysms crowd the posterior pole around the macula
        size = rng.uniform(0.005, 0.008) * radius
        lesions.append(
            _lesion(
                rng,
                "MA",
                sites.around(anatomy.macula_center, 0.35 * radius),
                (size, size),
                softness=0.45,
                opacity=0.95,
                irregularity=0.0,
            )
        )
    return lesions


def _hard_exudates(
    rng: np.random.Generator, anatomy: _Anatomy, sites: _SiteSampler, clusters: int, dme_risk: int
) -> list[_Lesion]:
    """Clusters of small bright spots, blob-like or circinate (a ring), placed to give ``dme_risk``.

    Every cluster has a spot at its centre. DME 2: the first cluster is centred within 0.7 DD of the
    macula centre. DME 1: clusters are centred at least 1.8 DD from the macula centre and no spot's outline
    comes within one DD (plus a pixel) of it.
    """
    disc_diameter, radius = anatomy.disc_diameter, anatomy.fov_radius
    macula = anatomy.macula_center
    irregularity = 0.15

    def far_from_macula(distance: float) -> _SiteFilter:
        return lambda point: np.linalg.norm(point - macula) > distance

    def near_macula(distance: float) -> _SiteFilter:
        return lambda point: np.linalg.norm(point - macula) <= distance

    lesions = []
    for cluster in range(clusters):
        if dme_risk == 2 and cluster == 0:
            centre = sites.around(macula, 0.35 * disc_diameter, keep=near_macula(0.7 * disc_diameter))
        else:
            centre = sites.anywhere(keep=far_from_macula(1.8 * disc_diameter) if dme_risk == 1 else None)
        circinate = rng.random() < 0.3
        ring_radius = rng.uniform(0.35, 0.6) * disc_diameter
        for spot in range(int(rng.integers(4, 15))):
            size = max(rng.uniform(0.006, 0.014) * radius, _smallest_semi_axis(irregularity))
            keep = far_from_macula(disc_diameter + size * (1 + irregularity) + 1.0) if dme_risk == 1 else None
            if spot == 0:
                point = centre
            elif circinate:
                point = sites.on_ring(centre, ring_radius, keep)
            else:
                point = sites.around(centre, 0.3 * disc_diameter, keep)
            lesions.append(
                _lesion(
                    rng,
                    "EX",
                    point,
                    (size, size * rng.uniform(0.75, 1.0)),
                    softness=0.2,
                    opacity=0.95,
                    irregularity=irregularity,
                )
            )
    return lesions


def _haemorrhage(rng: np.random.Generator, anatomy: _Anatomy, centre: np.ndarray) -> _Lesion:
    """A dot/blot haemorrhage, or a flame haemorrhage lying along the nerve fibres (radial from the disc)."""
    radius = anatomy.fov_radius
    if rng.random() < 0.3:
        width = rng.uniform(0.009, 0.014) * radius
        semi_axes = (width * rng.uniform(2.0, 3.0), width)
        from_disc = centre - anatomy.disc_center
        angle = math.atan2(from_disc[1], from_disc[0])
    else:
        size = rng.uniform(0.012, 0.032) * radius
        semi_axes = (size, size * rng.uniform(0.7, 1.0))
        angle = None
    return _lesion(rng, "HE", centre, semi_axes, softness=0.3, opacity=0.92, irregularity=0.2, angle=angle)


def _lesion(
    rng: np.random.Generator,
    kind: str,
    centre: np.ndarray,
    semi_axes: tuple[float, float],
    *,
    softness: float,
    opacity: float,
    irregularity: float,
    angle: float | None = None,
) -> _Lesion:
    """A lesion with a random orientation (unless given) and a randomly wobbling outline.

    Semi-axes are raised to the smallest size whose mask cannot be empty at this resolution.
    """
    smallest = _smallest_semi_axis(irregularity)
    semi_axes = (max(semi_axes[0], smallest), max(semi_axes[1], smallest))
    amplitudes = rng.uniform(0.2, 1.0, 3)
    amplitudes *= irregularity / amplitudes.sum()
    harmonics = tuple((float(a), float(rng.uniform(0, 2 * math.pi))) for a in amplitudes)
    return _Lesion(
        kind=kind,
        center=(float(centre[0]), float(centre[1])),
        semi_axes=semi_axes,
        angle=float(rng.uniform(0, math.pi)) if angle is None else angle,
        softness=softness,
        opacity=opacity,
        irregularity=irregularity,
        harmonics=harmonics,
    )


def _smallest_semi_axis(irregularity: float) -> float:
    """Pixels: an outline whose radius never drops below 0.75 px holds the pixel nearest its centre."""
    return _MIN_MASK_RADIUS_PX / (1 - irregularity)


def _stamp_lesions(image: np.ndarray, illumination: np.ndarray, lesions: list[_Lesion]) -> dict[str, np.ndarray]:
    """Blend ``lesions`` into ``image`` in their drawing order; return the mask of each lesion type."""
    size = image.shape[0]
    masks = {kind: np.zeros((size, size), bool) for kind in LESION_TYPES}
    for lesion in lesions:
        _stamp_lesion(image, illumination, masks[lesion.kind], lesion)
    return masks


def _lesion_counts(lesions: list[_Lesion], plan: _LesionPlan) -> dict[str, int]:
    counts = {kind: sum(lesion.kind == kind for lesion in lesions) for kind in LESION_TYPES}
    counts["NV"] = plan.neovascular_tufts
    return counts


def _stamp_lesion(image: np.ndarray, illumination: np.ndarray, mask: np.ndarray, lesion: _Lesion) -> None:
    """Blend one lesion into ``image`` within its bounding box and mark its outline (d <= 1) in ``mask``."""
    size = image.shape[0]
    cx, cy = lesion.center
    a, b = lesion.semi_axes
    reach = max(a, b) * (1 + lesion.irregularity) * (1 + lesion.softness) + 1.0
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, size)
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, size)
    dy, dx = np.ogrid[y0 - cy : y1 - cy, x0 - cx : x1 - cx]
    cos, sin = math.cos(lesion.angle), math.sin(lesion.angle)
    along = (dx * cos + dy * sin) / a
    across = (dy * cos - dx * sin) / b
    outline = np.ones_like(along * across)
    if lesion.harmonics:
        theta = np.arctan2(across, along)
        for order, (amplitude, phase) in enumerate(lesion.harmonics, start=2):
            outline += amplitude * np.cos(order * theta + phase)
    distance = np.hypot(along, across) / outline
    alpha = (lesion.opacity * _smoothstep(1 + lesion.softness, 1 - lesion.softness, distance))[..., None]
    region = image[y0:y1, x0:x1]
    target = illumination[y0:y1, x0:x1, None] * np.array(_LESION_RGB[lesion.kind], np.float32)
    region += alpha * (target - region)
    mask[y0:y1, x0:x1] |= distance <= 1.0


# ---------------------------------------------------------------------------------------------------
# the finished photograph


def _expose(rng: np.random.Generator, image: np.ndarray, anatomy: _Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """``image`` as the camera records it (8-bit pixels, dark outside the field of view) and the FOV mask."""
    image += rng.normal(0.0, 1.2, image.shape).astype(np.float32)  # sensor noise
    from_fov_center = _disc_distance(anatomy.size, anatomy.fov_center)
    fov = from_fov_center <= anatomy.fov_radius
    # the image fades to black over a thin rim, as vignetting does; a sharp cut would make JPEG ring
    # visibly into the dark background
    rim = max(0.04 * anatomy.fov_radius, 3.0)
    image *= _smoothstep(anatomy.fov_radius + 0.5, anatomy.fov_radius - rim, from_fov_center)[..., None]
    # a camera's black is not exactly zero
    image += rng.integers(0, 3, image.shape).astype(np.float32) * ~fov[..., None]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), fov


def _as_point(point: np.ndarray) -> tuple[float, float]:
    return float(point[0]), float(point[1])


def _mirrored_to_left_eye(sample: FundusSample) -> FundusSample:
    """The left eye that is the mirror image of the right eye ``sample``."""
    last_column = sample.image.shape[1] - 1

    def mirrored(point: tuple[float, float]) -> tuple[float, float]:
        return last_column - point[0], point[1]

    # mirroring swaps lower-right with lower-left and upper-left with upper-right
    lower_right, lower_left, upper_left, upper_right = sample.haemorrhages_per_quadrant
    return replace(
        sample,
        image=np.ascontiguousarray(sample.image[:, ::-1]),
        masks={name: np.ascontiguousarray(mask[:, ::-1]) for name, mask in sample.masks.items()},
        macula_center=mirrored(sample.macula_center),
        disc_center=mirrored(sample.disc_center),
        fov_center=mirrored(sample.fov_center),
        eye="left",
        haemorrhages_per_quadrant=(lower_left, lower_right, upper_right, upper_left),
    )


# ---------------------------------------------------------------------------------------------------
# rasterising and image helpers


def _rasterise(vessels: list[_Vessel], size: int, supersampling: int) -> np.ndarray:
    """Anti-aliased coverage (0-1) of the vessels, drawn ``supersampling`` times larger and averaged down."""
    if not vessels:
        return np.zeros((size, size), np.float32)
    canvas = Image.new("L", (size * supersampling, size * supersampling), 0)
    draw = ImageDraw.Draw(canvas)
    # output pixel j covers canvas pixels [j*s, (j+1)*s), whose centre is j*s + (s-1)/2
    offset = (supersampling - 1) / 2
    for vessel in vessels:
        canvas_points = vessel.points * supersampling + offset
        canvas_widths = np.maximum(np.rint(vessel.widths * supersampling), 1).astype(int)
        # one line call per run of equal width, with a round cap where the width changes
        run_starts = np.flatnonzero(np.diff(canvas_widths, prepend=-1))
        for start, end in zip(run_starts, [*run_starts[1:], len(vessel.points) - 1], strict=True):
            width = int(canvas_widths[start])
            run = [tuple(point) for point in canvas_points[start : max(end, start + 1) + 1]]
            if len(run) > 1:
                draw.line(run, fill=255, width=width, joint="curve")
            x, y = run[0]
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return np.asarray(canvas.reduce(supersampling), np.float32) / 255.0


def _paint(image: np.ndarray, illumination: np.ndarray, alpha: np.ndarray, rgb: np.ndarray) -> None:
    image += alpha[..., None] * (illumination[..., None] * rgb - image)


def _disc_distance(size: int, center: np.ndarray) -> np.ndarray:
    """Distance of every pixel centre from ``center`` (x, y)."""
    rows, columns = np.ogrid[0:size, 0:size]
    return np.hypot(columns - np.float32(center[0]), rows - np.float32(center[1])).astype(np.float32)


def _ellipse_distance(size: int, center: np.ndarray, semi_axes: tuple[float, float]) -> np.ndarray:
    """Axis-aligned normalised elliptical distance: 1 on the ellipse."""
    rows, columns = np.ogrid[0:size, 0:size]
    return np.hypot((columns - center[0]) / semi_axes[0], (rows - center[1]) / semi_axes[1]).astype(
        np.float32
    )


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish noise varying smoothly over ``cells`` cells across the image."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), np.float32)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 at ``edge0``, 1 at ``edge1``, smooth in between (either edge may be the larger)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _wrap_angle(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _pixel_index(point: np.ndarray, size: int) -> tuple[int, int]:
    column = min(max(int(round(point[0])), 0), size - 1)
    row = min(max(int(round(point[1])), 0), size - 1)
    return row, column


def _rounded(point: tuple[float, float]) -> list[float]:
    return [round(point[0], 3), round(point[1], 3)]


# ---------------------------------------------------------------------------------------------------
# files


def _write_photograph(
    out_dir: Path, seed: int, index: int, abnormal: bool, image_size: int, image_format: str
) -> dict:
    """Draw image ``index`` of the data set, write it and its masks; return its manifest record."""
    patient_id, eye = index // 2, EYES[index % 2]
    stem = f"{patient_id}_{eye}"
    file_name = f"{stem}.{image_format}"
    sample = generate_fundus(
        np.random.Generator(np.random.PCG64([seed, _IMAGE_STREAM, index])),
        image_size,
        abnormal=abnormal,
        eye=eye,
    )
    save_image(sample.image, out_dir / "images" / file_name, image_format)
    for name, mask in sample.masks.items():
        save_image(mask.astype(np.uint8) * 255, out_dir / "masks" / name / f"{stem}.png", "png")
    return {
        "stem": stem,
        "image": f"images/{file_name}",
        "patient_id": patient_id,
        "eye": eye,
        "label": sample.label,
        "dr_grade": sample.dr_grade,
        "dme_risk": sample.dme_risk,
        "lesion_pixels": {kind: int(sample.masks[kind].sum()) for kind in LESION_TYPES},
        "lesion_counts": sample.lesion_counts,
        "haemorrhages_per_quadrant": list(sample.haemorrhages_per_quadrant),
        "disc_center": _rounded(sample.disc_center),
        "disc_diameter": round(sample.disc_diameter, 3),
        "macula_center": _rounded(sample.macula_center),
        "fov_center": _rounded(sample.fov_center),
        "fov_radius": round(sample.fov_radius, 3),
    }


def _write_sheets(out_dir: Path, records: list[dict], seed: int) -> None:
    """The generic, the IDRiD and the ODIR annotation sheets of the written images."""
    _write_csv(out_dir / "labels.csv", LABELS_COLUMNS, [(r["image"], r["label"]) for r in records])
    _write_csv(
        out_dir / "idrid_grading.csv",
        IDRID_COLUMNS,
        [(r["stem"], r["dr_grade"], r["dme_risk"]) for r in records],
    )
    _write_csv(out_dir / "odir_annotations.csv", ODIR_COLUMNS, _odir_rows(records, seed))


def save_image(pixels: np.ndarray, path: Path, image_format: str) -> None:
    """Fixed encoder options and no metadata, so equal pixels always give equal bytes."""
    picture = Image.fromarray(pixels)
    if image_format == "png":
        picture.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    else:
        picture.save(
            path, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False, progressive=False
        )


def _write_csv(path: Path, header: tuple[str, ...], rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _odir_rows(records: list[dict], seed: int) -> list[list]:
    """One row per patient: left eye then right eye (empty when the patient has only a left eye)."""
    by_patient: dict[int, dict[str, dict]] = {}
    for record in records:
        by_patient.setdefault(record["patient_id"], {})[record["eye"]] = record
    rows = []
    for patient_id, eyes in by_patient.items():
        rng = np.random.Generator(np.random.PCG64([seed, _PATIENT_STREAM, patient_id]))
        age = int(rng.integers(40, 81))
        sex = "Male" if rng.random() < 0.5 else "Female"
        left, right = eyes["left"], eyes.get("right")
        fundus = [Path(left["image"]).name, Path(right["image"]).name if right else ""]
        keywords = [DR_KEYWORDS[left["dr_grade"]], DR_KEYWORDS[right["dr_grade"]] if right else ""]
        has_retinopathy = any(eye["dr_grade"] > 0 for eye in eyes.values())
        all_normal = all(eye["label"] == 0 for eye in eyes.values())
        rows.append(
            [
                patient_id,
                age,
                sex,
                *fundus,
                *keywords,
                int(all_normal),
                int(has_retinopathy),
                0,
                0,
                0,
                0,
                0,
                0,
            ]
        )
    return rows
