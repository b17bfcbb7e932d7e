"""Tests for the synthetic fundus generator: facts about the pixels, masks and sheets it writes."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camcontrast_monai.data.readers import read_idrid_grading, read_image_label_csv, read_odir_annotations
from camcontrast_monai.synthetic.fundus import (
    DR_KEYWORDS,
    LESION_TYPES,
    MASK_NAMES,
    MODERATE_MAX_HAEMORRHAGES,
    SEVERE_HAEMORRHAGES_PER_QUADRANT,
    class_counts,
    generate_fundus,
    write_fundus_dataset,
)

SIZE = 128
ODIR_HEADER = [
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
]
# every (DR grade, DME risk) an abnormal image can have
ABNORMAL_GRADES = [(1, 0), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2)]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation by ``radius`` pixels."""
    padded = np.pad(mask, radius)
    height, width = mask.shape
    grown = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            grown |= padded[dy : dy + height, dx : dx + width]
    return grown


def _distance_from(sample, point) -> np.ndarray:
    rows, columns = np.indices(sample.image.shape[:2])
    return np.hypot(columns - point[0], rows - point[1])


def _fov(sample) -> np.ndarray:
    return _distance_from(sample, sample.fov_center) <= sample.fov_radius


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        header, *rows = list(csv.reader(file))
    return header, rows


@pytest.fixture(scope="module")
def paired_samples():
    """The same 20 seeds drawn normal and abnormal, alternating eyes."""
    return [
        (generate_fundus(seed, SIZE, False, eye), generate_fundus(seed, SIZE, True, eye))
        for seed in range(20)
        for eye in [("left", "right")[seed % 2]]
    ]


@pytest.fixture(scope="module")
def graded_samples():
    """Two abnormal images of every (DR, DME) combination."""
    return [
        generate_fundus(100 + index, SIZE, True, ("left", "right")[index % 2], dr_grade=dr, dme_risk=dme)
        for index, (dr, dme) in enumerate(ABNORMAL_GRADES * 2)
    ]


@pytest.fixture(scope="module")
def all_samples(paired_samples, graded_samples):
    return [sample for pair in paired_samples for sample in pair] + graded_samples


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("fundus")
    manifest = write_fundus_dataset(out_dir, n=9, seed=3, image_size=SIZE)
    return out_dir, manifest


# ---------------------------------------------------------------------------------------------------
# determinism


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()
    }


def test_same_seed_writes_identical_files_and_another_seed_differs(tmp_path):
    # worker processes draw "a", this process draws "b": the same files either way
    first = write_fundus_dataset(tmp_path / "a", n=3, seed=5, image_size=96, num_workers=2)
    second = write_fundus_dataset(tmp_path / "b", n=3, seed=5, image_size=96, num_workers=0)
    write_fundus_dataset(tmp_path / "c", n=3, seed=6, image_size=96)
    files_a, files_b, files_c = (_file_bytes(tmp_path / name) for name in "abc")

    assert first == second
    assert len(files_a) == 3 + 3 * len(MASK_NAMES) + 4
    assert files_a == files_b
    for stem in ("0_left", "0_right", "1_left"):
        assert files_a[f"images/{stem}.png"] != files_c[f"images/{stem}.png"]


def test_an_image_does_not_depend_on_n(tmp_path):
    small = write_fundus_dataset(tmp_path / "small", n=4, seed=8, image_size=64)
    large = write_fundus_dataset(tmp_path / "large", n=7, seed=8, image_size=64)
    large_labels = {record["stem"]: record["label"] for record in large["images"]}
    same_label = [
        record["stem"] for record in small["images"] if record["label"] == large_labels[record["stem"]]
    ]

    assert same_label
    for stem in same_label:
        small_bytes = (tmp_path / "small" / "images" / f"{stem}.png").read_bytes()
        assert small_bytes == (tmp_path / "large" / "images" / f"{stem}.png").read_bytes()


def test_generate_fundus_is_deterministic_and_left_eye_mirrors_right_eye():
    right = generate_fundus(7, 96, True, "right", dr_grade=3, dme_risk=2)
    again = generate_fundus(7, 96, True, "right", dr_grade=3, dme_risk=2)
    left = generate_fundus(7, 96, True, "left", dr_grade=3, dme_risk=2)

    np.testing.assert_array_equal(right.image, again.image)
    np.testing.assert_array_equal(left.image, right.image[:, ::-1])
    for name in MASK_NAMES:
        np.testing.assert_array_equal(left.masks[name], right.masks[name][:, ::-1])
    # the disc is on the nasal side: the right of a right eye's photograph, the left of a left eye's
    assert right.disc_center[0] > right.fov_center[0] > right.macula_center[0]
    assert left.disc_center[0] < left.fov_center[0] < left.macula_center[0]
    assert left.disc_center[0] == pytest.approx(95 - right.disc_center[0])
    mirrored_quadrants = right.haemorrhages_per_quadrant
    assert left.haemorrhages_per_quadrant == (
        mirrored_quadrants[1],
        mirrored_quadrants[0],
        mirrored_quadrants[3],
        mirrored_quadrants[2],
    )


# ---------------------------------------------------------------------------------------------------
# class counts and annotation sheets


@pytest.mark.parametrize(
    ("n", "class_ratio", "expected"),
    [
        (9, 0.8, (4, 5)),
        (18, 0.8, (8, 10)),
        (1, 0.8, (0, 1)),
        (10, 1.0, (5, 5)),
        (5, 1.0, (2, 3)),
        (10, 0.25, (2, 8)),
    ],
)
def test_class_counts_follow_the_minority_to_majority_ratio(n, class_ratio, expected):
    assert class_counts(n, class_ratio) == expected


def test_written_class_counts_match_class_ratio(tmp_path, dataset):
    _, manifest = dataset
    labels = [record["label"] for record in manifest["images"]]
    assert manifest["class_counts"] == {"normal": 4, "abnormal": 5}
    assert (labels.count(0), labels.count(1)) == (4, 5)

    half = write_fundus_dataset(tmp_path, n=6, seed=1, image_size=64, class_ratio=0.5)
    assert [record["label"] for record in half["images"]].count(0) == 2


def test_annotation_sheets_agree_with_each_other_and_the_manifest(dataset):
    out_dir, manifest = dataset
    records = {record["stem"]: record for record in manifest["images"]}
    assert list(records) == [
        "0_left",
        "0_right",
        "1_left",
        "1_right",
        "2_left",
        "2_right",
        "3_left",
        "3_right",
        "4_left",
    ]
    assert manifest == json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))

    header, rows = _read_csv(out_dir / "labels.csv")
    assert header == ["image", "label"]
    assert [(image, int(label)) for image, label in rows] == [
        (f"images/{stem}.png", record["label"]) for stem, record in records.items()
    ]

    header, rows = _read_csv(out_dir / "idrid_grading.csv")
    assert header == ["Image name", "Retinopathy grade", "Risk of macular edema "]
    assert [(stem, int(dr), int(dme)) for stem, dr, dme in rows] == [
        (stem, record["dr_grade"], record["dme_risk"]) for stem, record in records.items()
    ]

    header, rows = _read_csv(out_dir / "odir_annotations.csv")
    assert header == ODIR_HEADER
    assert [row[0] for row in rows] == ["0", "1", "2", "3", "4"]
    for row in rows:
        cells = dict(zip(ODIR_HEADER, row, strict=True))
        eyes = [
            records[f"{cells['ID']}_{eye}"] for eye in ("left", "right") if f"{cells['ID']}_{eye}" in records
        ]
        assert 40 <= int(cells["Patient Age"]) <= 80
        assert cells["Patient Sex"] in ("Male", "Female")
        assert cells["Left-Fundus"] == f"{cells['ID']}_left.png"
        assert cells["Left-Diagnostic Keywords"] == DR_KEYWORDS[eyes[0]["dr_grade"]]
        if len(eyes) == 2:
            assert cells["Right-Fundus"] == f"{cells['ID']}_right.png"
            assert cells["Right-Diagnostic Keywords"] == DR_KEYWORDS[eyes[1]["dr_grade"]]
        else:
            assert cells["Right-Fundus"] == cells["Right-Diagnostic Keywords"] == ""
        assert cells["N"] == str(int(all(eye["label"] == 0 for eye in eyes)))
        assert cells["D"] == str(int(any(eye["dr_grade"] > 0 for eye in eyes)))
        assert [cells[flag] for flag in "GCAHMO"] == ["0"] * 6


def test_the_package_readers_read_the_written_sheets(dataset):
    out_dir, manifest = dataset
    labels = {record["stem"]: record["label"] for record in manifest["images"]}

    def stem(entry):
        return Path(entry["image"]).stem

    odir = read_odir_annotations(out_dir / "odir_annotations.csv", out_dir / "images")
    idrid = read_idrid_grading(out_dir / "idrid_grading.csv", out_dir / "images")
    generic = read_image_label_csv(out_dir / "labels.csv")
    for datalist in (odir, idrid, generic):
        assert {stem(entry): entry["label"] for entry in datalist} == labels


def test_masks_are_binary_pngs_of_the_image_size_and_match_the_manifest(dataset):
    out_dir, manifest = dataset
    for record in manifest["images"]:
        image = Image.open(out_dir / record["image"])
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (SIZE, SIZE))
        for name in MASK_NAMES:
            mask_image = Image.open(out_dir / "masks" / name / f"{record['stem']}.png")
            assert (mask_image.format, mask_image.mode, mask_image.size) == ("PNG", "L", (SIZE, SIZE))
            mask = np.asarray(mask_image)
            assert set(np.unique(mask)) <= {0, 255}
            if name in LESION_TYPES:
                assert np.count_nonzero(mask) == record["lesion_pixels"][name]
        has_lesions = sum(record["lesion_pixels"].values()) > 0
        assert has_lesions == (record["label"] == 1)


def test_jpg_format_writes_jpeg_images_with_png_masks(tmp_path):
    manifest = write_fundus_dataset(tmp_path, n=3, seed=2, image_size=96, image_format="jpg")
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == [
        "0_left.jpg",
        "0_right.jpg",
        "1_left.jpg",
    ]
    for record in manifest["images"]:
        assert record["image"] == f"images/{record['stem']}.jpg"
        image = Image.open(tmp_path / record["image"])
        assert (image.format, image.size) == ("JPEG", (96, 96))
        pixels = np.asarray(image.convert("RGB"))
        # JPEG rings a little at the FOV edge; well outside it the background stays dark
        rows, columns = np.indices((96, 96))
        outside = (
            np.hypot(columns - record["fov_center"][0], rows - record["fov_center"][1])
            > record["fov_radius"] + 2
        )
        assert pixels[outside].max() < 10
        assert Image.open(tmp_path / "masks" / "EX" / f"{record['stem']}.png").format == "PNG"
    _, rows = _read_csv(tmp_path / "odir_annotations.csv")
    assert rows[0][3:5] == ["0_left.jpg", "0_right.jpg"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n": 0}, "n must be"),
        ({"n": 2, "image_size": 63}, "image_size must be at least 64"),
        ({"n": 2, "class_ratio": 0.0}, "class_ratio must be in"),
        ({"n": 2, "class_ratio": 1.5}, "class_ratio must be in"),
        ({"n": 2, "image_format": "bmp"}, "image_format must be one of"),
        ({"n": 2, "seed": -1}, "seed must be"),
    ],
)
def test_bad_dataset_arguments_raise(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        write_fundus_dataset(tmp_path, **arguments)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"image_size": 32}, "image_size must be at least 64"),
        ({"eye": "middle"}, "eye must be one of"),
        ({"abnormal": False, "dr_grade": 2}, "a normal image has DR grade 0"),
        ({"abnormal": True, "dr_grade": 0}, "DR grade from 1 to 4"),
        ({"abnormal": True, "dr_grade": 1, "dme_risk": 2}, "0 for DR grade 1"),
    ],
)
def test_bad_generate_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_fundus(0, **{"image_size": 64, **arguments})


# ---------------------------------------------------------------------------------------------------
# labels and masks


def test_normal_images_have_no_lesions_and_abnormal_images_do(all_samples):
    for sample in all_samples:
        lesion_pixels = {kind: int(sample.masks[kind].sum()) for kind in LESION_TYPES}
        if sample.label == 0:
            assert (sample.dr_grade, sample.dme_risk) == (0, 0)
            assert sum(lesion_pixels.values()) == 0
        else:
            assert sample.dr_grade >= 1
            assert lesion_pixels["MA"] > 0


def test_dr_grade_matches_the_drawn_lesions(graded_samples):
    for sample in graded_samples:
        lesion_types = {kind for kind in LESION_TYPES if sample.masks[kind].any()}
        per_quadrant = sample.haemorrhages_per_quadrant
        assert sum(per_quadrant) == sample.lesion_counts["HE"]
        assert sample.masks["HE"].any() == (sample.lesion_counts["HE"] > 0)
        assert (sample.lesion_counts["NV"] > 0) == (sample.dr_grade == 4)
        if sample.dr_grade == 1:
            assert lesion_types == {"MA"}
        elif sample.dr_grade == 2:
            assert "MA" in lesion_types and lesion_types & {"HE", "EX", "SE"}
            assert sum(per_quadrant) <= MODERATE_MAX_HAEMORRHAGES
        elif sample.dr_grade == 3:
            assert min(per_quadrant) >= SEVERE_HAEMORRHAGES_PER_QUADRANT
            # haemorrhage pixels in all four quadrants around the FOV centre, as the image shows them
            rows, columns = np.nonzero(sample.masks["HE"])
            below, right = rows > sample.fov_center[1], columns > sample.fov_center[0]
            assert {(b, r) for b, r in zip(below, right, strict=True)} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_proliferative_images_add_new_vessels_near_the_disc():
    for seed in range(3):
        normal = generate_fundus(seed, SIZE, False, "right")
        proliferative = generate_fundus(seed, SIZE, True, "right", dr_grade=4, dme_risk=0)
        new_vessels = proliferative.masks["vessels"] & ~normal.masks["vessels"]
        assert new_vessels.sum() > 0
        assert not (normal.masks["vessels"] & ~proliferative.masks["vessels"]).any()
        distance = _distance_from(proliferative, proliferative.disc_center)[new_vessels]
        assert distance.max() <= 1.5 * proliferative.disc_diameter + 2


def test_dme_risk_follows_hard_exudates_near_the_macula(graded_samples):
    seen = set()
    for sample in graded_samples:
        exudates = sample.masks["EX"]
        near_macula = exudates & (_distance_from(sample, sample.macula_center) <= sample.disc_diameter)
        if sample.dme_risk == 0:
            assert not exudates.any()
        elif sample.dme_risk == 1:
            assert exudates.any() and not near_macula.any()
        else:
            assert near_macula.any()
        seen.add(sample.dme_risk)
    assert seen == {0, 1, 2}


# ---------------------------------------------------------------------------------------------------
# geometry and appearance


def test_background_outside_the_field_of_view_is_dark(all_samples, dataset):
    for sample in all_samples:
        outside = _distance_from(sample, sample.fov_center) > sample.fov_radius + 1
        assert sample.image[outside].max() < 10
        inside = _distance_from(sample, sample.fov_center) < sample.fov_radius - 2
        assert sample.image[inside][:, 0].mean() > 60  # the retina itself is lit (red channel)
    out_dir, manifest = dataset
    for record in manifest["images"]:
        pixels = np.asarray(Image.open(out_dir / record["image"]))
        rows, columns = np.indices(pixels.shape[:2])
        outside = (
            np.hypot(columns - record["fov_center"][0], rows - record["fov_center"][1])
            > record["fov_radius"] + 1
        )
        assert pixels[outside].max() < 10


def test_anatomy_masks_are_nested_and_lesions_lie_inside_the_fov(all_samples):
    for sample in all_samples:
        fov = _fov(sample)
        assert sample.masks["OC"].any() and sample.masks["OD"].any()
        assert not (sample.masks["OC"] & ~sample.masks["OD"]).any()
        for name in MASK_NAMES:
            assert sample.masks[name].shape == sample.image.shape[:2]
            assert not (sample.masks[name] & ~fov).any()
        disc_area = np.pi * (sample.disc_diameter / 2) ** 2
        assert sample.masks["OD"].sum() == pytest.approx(disc_area, rel=0.2)
        # the macula lies about 2.5 disc diameters from the disc
        disc_to_macula = np.hypot(*np.subtract(sample.macula_center, sample.disc_center))
        assert 2.2 <= disc_to_macula / sample.disc_diameter <= 2.8
        # thin vessels fall below the 50 % coverage threshold at this size, so only a few % are vessel
        assert 0.015 < sample.masks["vessels"].sum() / fov.sum() < 0.25


def test_lesions_are_small(all_samples):
    fractions = [
        sum(sample.masks[kind].sum() for kind in LESION_TYPES) / _fov(sample).sum()
        for sample in all_samples
        if sample.label == 1
    ]
    assert np.mean(fractions) < 0.05
    assert max(fractions) < 0.1


def test_lesions_differ_visibly_from_the_retina_around_them(all_samples):
    # (red, green, blue) under a lesion mask minus the 2-pixel ring around it, in every image
    def darker(difference):
        return difference[0] < -20 and difference[1] < -15

    def yellower(difference):
        return difference[1] > 40

    def paler(difference):
        return difference[1] > 20 and difference[2] > 20

    expected = {"MA": darker, "HE": darker, "EX": yellower, "SE": paler}
    checked = {kind: 0 for kind in LESION_TYPES}
    for sample in all_samples:
        pixels = sample.image.astype(float)
        for kind in LESION_TYPES:
            mask = sample.masks[kind]
            if mask.any():
                ring = _dilate(mask, 3) & ~_dilate(mask, 1) & _fov(sample)
                difference = pixels[mask].mean(axis=0) - pixels[ring].mean(axis=0)
                assert expected[kind](difference), (kind, difference)
                checked[kind] += 1
    assert min(checked.values()) >= 5


def test_lesions_change_only_their_own_pixels(paired_samples):
    """Normal and abnormal draws of one seed are the same photograph apart from the lesions."""
    normal_means, abnormal_means = [], []
    for normal, abnormal in paired_samples:
        lesion_region = np.zeros(normal.image.shape[:2], bool)
        for kind in LESION_TYPES:
            lesion_region |= abnormal.masks[kind]
        lesion_region |= abnormal.masks["vessels"] & ~normal.masks["vessels"]  # new vessels
        changed = np.any(normal.image != abnormal.image, axis=-1)
        assert not (changed & ~_dilate(lesion_region, 4)).any()
        for name in ("OD", "OC"):
            np.testing.assert_array_equal(normal.masks[name], abnormal.masks[name])
        normal_means.append(normal.image.mean())
        abnormal_means.append(abnormal.image.mean())
    # no global brightness or colour shortcut between the classes
    assert abs(np.mean(normal_means) - np.mean(abnormal_means)) < 3
    assert max(abs(a - b) for a, b in zip(normal_means, abnormal_means, strict=True)) < 3


@pytest.mark.parametrize("size", [64, 1024])
def test_smallest_and_largest_sizes_keep_every_lesion_type(size):
    sample = generate_fundus(11, size, True, "left", dr_grade=3, dme_risk=2)
    assert sample.image.shape == (size, size, 3) and sample.image.dtype == np.uint8
    for name in MASK_NAMES:
        assert sample.masks[name].shape == (size, size) and sample.masks[name].dtype == bool
    for kind in ("MA", "HE", "EX"):
        assert sample.masks[kind].any()
    near_macula = _distance_from(sample, sample.macula_center) <= sample.disc_diameter
    assert (sample.masks["EX"] & near_macula).any()


def test_a_given_cup_to_disc_ratio_changes_only_the_cup():
    drawn, large = generate_fundus(5, 128), generate_fundus(5, 128, cup_to_disc=0.75)
    assert 0.3 <= drawn.cup_to_disc < 0.5 and large.cup_to_disc == pytest.approx(0.75)
    assert large.masks["OC"].sum() > 1.8 * drawn.masks["OC"].sum()
    np.testing.assert_array_equal(large.masks["OD"], drawn.masks["OD"])
    np.testing.assert_array_equal(large.masks["vessels"], drawn.masks["vessels"])
    changed = np.any(large.image != drawn.image, axis=-1)
    assert changed.any() and (changed & ~large.masks["OD"]).sum() <= 0.2 * changed.sum()  # the cup is inside the disc
    with pytest.raises(ValueError, match="cup_to_disc"):
        generate_fundus(5, 128, cup_to_disc=0.9)


def test_refuge_writer_labels_follow_the_cup_to_disc_ratio(tmp_path):
    from camcontrast_monai.data import read_refuge_glaucoma
    from camcontrast_monai.synthetic import GLAUCOMA_CUP_TO_DISC, write_refuge_dataset

    manifest = write_refuge_dataset(tmp_path, n=12, seed=3, image_size=64)
    assert manifest["class_counts"] == {"Glaucoma": 3, "Non-Glaucoma": 9}
    by_file = {Path(r["image"]).name: r for r in manifest["images"]}
    entries = read_refuge_glaucoma(tmp_path / "Training400")
    assert len(entries) == 12
    for entry in entries:
        record = by_file[Path(entry["image"]).name]
        assert entry["label"] == record["label"] == int(record["cup_to_disc"] >= GLAUCOMA_CUP_TO_DISC)
        assert Image.open(entry["image"]).format == "JPEG" and Image.open(entry["image"]).size == (64, 64)
    # photograph i's cup-to-disc draw does not depend on n: where both sets give it the same class, it is the same
    again = write_refuge_dataset(tmp_path / "larger", n=13, seed=3, image_size=64)
    same_class = [(a, b) for a, b in zip(manifest["images"], again["images"][:12], strict=True) if a["label"] == b["label"]]
    assert len(same_class) >= 6 and all(a["cup_to_disc"] == b["cup_to_disc"] for a, b in same_class)
