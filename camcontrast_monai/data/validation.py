"""Check a data set before training: every bad input is reported up front, naming its file.

Hospital exports are messy: truncated downloads, RGBA screenshots, a volume where a slice was meant,
labels typed by hand. Left alone, each of these fails hours into a run with an error from deep inside
a decoder, or is silently trained on. ``check_datalist`` reads every image once, the way the bundle
reads it, and collects *all* problems; ``validate_datalist`` raises them together in one
``ValueError`` so a bundle config stops before any long work (or any output file) starts.

Table-level problems (missing columns, unknown label text, duplicate ids) are the readers' job
(``camcontrast_monai.data.readers``); this module checks the datalists they return.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from monai.data import ITKReader, NibabelReader, NumpyReader, PILReader
from monai.data.image_reader import ImageReader
from monai.transforms import LoadImage
from monai.utils import ensure_tuple, ensure_tuple_rep
from PIL import ImageFile
from tqdm.auto import tqdm

__all__ = ["Problem", "check_datalist", "check_image_file", "validate_datalist"]

MAX_PROBLEMS_IN_ERROR = 50
# a decoder's message is context, not the report: keep one problem on one readable line
MAX_REASON_LENGTH = 300

# (file name ending, format named in messages, reader): PNG/JPEG/TIFF exactly as the bundle reads them
_IMAGE_FORMATS: tuple[tuple[str, str, Callable[[], ImageReader]], ...] = (
    (".png", "PNG", functools.partial(PILReader, reverse_indexing=False)),
    (".jpg", "JPEG", functools.partial(PILReader, reverse_indexing=False)),
    (".jpeg", "JPEG", functools.partial(PILReader, reverse_indexing=False)),
    (".tif", "TIFF", functools.partial(PILReader, reverse_indexing=False)),
    (".tiff", "TIFF", functools.partial(PILReader, reverse_indexing=False)),
    (".dcm", "DICOM", ITKReader),
    (".nii", "NIfTI", NibabelReader),
    (".nii.gz", "NIfTI", NibabelReader),
    (".npy", "NumPy", NumpyReader),
)


@dataclass
class Problem:
    """One thing wrong with the input: the file it is in, the 1-based table row if any, and what."""

    path: str
    what: str
    row: int | None = None

    def __str__(self) -> str:
        where = self.path if self.row is None else f"{self.path}, row {self.row}"
        return f"{where}: {self.what}"


def check_image_file(
    path: str | os.PathLike,
    expected_spatial_dims: int,
    expected_channels: int | Sequence[int] | None = None,
    min_spatial_size: int | Sequence[int] | None = None,
) -> list[Problem]:
    """Read one image with MONAI's ``LoadImage`` (channel first) and list what is wrong with it.

    The reader follows the extension: PNG/JPEG/TIFF with ``PILReader(reverse_indexing=False)`` as the
    bundle does, ``.dcm`` with ``ITKReader``, ``.nii``/``.nii.gz`` with ``NibabelReader``, ``.npy``
    with ``NumpyReader`` (a ``.npy`` array has no channel axis). A truncated PNG/JPEG is an error even
    where ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` has been switched on. ``min_spatial_size`` is one
    size for every axis or one per axis, in the order the reader gives the axes. Never raises: any
    failure to read becomes a ``Problem``.
    """
    path = os.fspath(path)
    existence_problems = _check_exists(path)
    if existence_problems:
        return existence_problems
    image_format = _image_format(path)
    if image_format is None:
        known = ", ".join(ending for ending, _, _ in _IMAGE_FORMATS)
        return [Problem(path, f"has an unsupported file type; expected one of {known}")]
    format_name, make_reader = image_format
    if os.path.getsize(path) == 0:
        return [Problem(path, f"is empty (0 bytes); expected a {format_name} image")]
    try:
        with _pil_rejects_truncated_images():
            image = _load_image()(path, reader=_reader(make_reader))
    except Exception as error:  # every decoder failure, whatever its type, is this file's problem
        return [Problem(path, f"cannot be read as {format_name}: {_one_line(error)}")]

    problems = []
    spatial_size = tuple(image.shape[1:])
    if len(spatial_size) != expected_spatial_dims:
        problems.append(
            Problem(
                path,
                f"is {len(spatial_size)}D (spatial size {_size_text(spatial_size)}); "
                f"expected a {expected_spatial_dims}D image",
            )
        )
    else:
        problems += _check_channels(path, image, expected_channels)
        problems += _check_size(path, spatial_size, min_spatial_size)
    problems += _check_finite(path, image)
    return problems


def check_datalist(
    datalist: Sequence[dict],
    image_key: str = "image",
    label_key: str | None = "label",
    spatial_dims: int = 2,
    channels: int | Sequence[int] | None = 3,
    min_spatial_size: int | Sequence[int] | None = None,
    allowed_labels: Sequence | None = (0, 1),
    require_both_classes: bool = True,
    check_pixels: bool = True,
    source: str = "datalist",
    progress: bool = True,
) -> list[Problem]:
    """List every problem of a MONAI datalist (``[{"image": path, "label": 0 or 1, ...}, ...]``).

    Checks, all collected rather than stopping at the first: an empty data set; entries that are not
    dicts or lack ``image_key``/``label_key``; labels outside ``allowed_labels`` (None: any label);
    an image listed twice; with ``require_both_classes``, a data set without both normal (0) and
    abnormal (1) entries; then each distinct image file (read once) with ``check_image_file`` against
    ``spatial_dims``, ``channels`` and ``min_spatial_size``. ``check_pixels=False`` only checks that
    the files exist. ``label_key=None`` skips every label check (e.g. segmentation datalists).
    Problems about the list itself name ``source`` (the sheet or JSON file it came from) and the
    entry as ``datalist[i]`` (0-based); problems of an image name the image file.
    """
    if len(datalist) == 0:
        return [Problem(source, "the data set is empty; expected at least one entry")]
    required_keys = [key for key in (image_key, label_key) if key is not None]
    problems: list[Problem] = []
    indices_of_image: dict[str, list[int]] = {}
    class_counts: Counter = Counter()
    for index, entry in enumerate(datalist):
        if not isinstance(entry, dict):
            problems.append(
                Problem(
                    source,
                    f"datalist[{index}] is a {type(entry).__name__}; expected a dict with keys {required_keys}",
                )
            )
            continue
        problems += _check_entry_keys(index, entry, required_keys, source)
        if label_key in entry:
            problems += _check_label(index, entry, image_key, label_key, allowed_labels, source)
            if _is_one_of(entry[label_key], (0, 1)):
                class_counts[int(entry[label_key])] += 1
        if image_key in entry:
            image = entry[image_key]
            if isinstance(image, (str, os.PathLike)):
                indices_of_image.setdefault(os.path.normpath(os.path.abspath(image)), []).append(index)
            else:
                problems.append(
                    Problem(source, f"datalist[{index}]: {image_key} is {image!r}; expected a file path")
                )

    problems += _check_listed_once(indices_of_image, source)
    if label_key is not None and require_both_classes:
        problems += _check_both_classes(class_counts, source)
    images = tqdm(indices_of_image, desc=f"checking images of {source}", unit="image", disable=not progress)
    for image in images:
        if check_pixels:
            problems += check_image_file(image, spatial_dims, channels, min_spatial_size)
        else:
            problems += _check_exists(image)
    return problems


def validate_datalist(datalist: Sequence[dict], source: str = "datalist", **check_options) -> Sequence[dict]:
    """Return ``datalist`` unchanged if ``check_datalist`` finds nothing, else raise one ``ValueError``
    listing every problem (the first ``MAX_PROBLEMS_IN_ERROR``, then how many more).

    ``check_options`` are ``check_datalist``'s. Made for bundle configs, where it wraps a reader::

        "pretrain_datalist": {
            "_target_": "camcontrast_monai.data.validate_datalist",
            "datalist": {"_target_": "camcontrast_monai.data.read_odir_annotations",
                         "sheet_path": "@pretrain_sheet", "image_dir": "@pretrain_image_dir"},
            "spatial_dims": "@spatial_dims", "channels": "@in_channels", "min_spatial_size": 16,
            "source": "@pretrain_sheet"
        }
    """
    problems = check_datalist(datalist, source=source, **check_options)
    if not problems:
        return datalist
    lines = [f"  {problem}" for problem in problems[:MAX_PROBLEMS_IN_ERROR]]
    if len(problems) > MAX_PROBLEMS_IN_ERROR:
        lines.append(f"  and {len(problems) - MAX_PROBLEMS_IN_ERROR} more")
    raise ValueError(
        f"{source}: {len(problems)} problem(s) in the data; fix them before training:\n" + "\n".join(lines)
    )


def _check_entry_keys(index: int, entry: dict, required_keys: list[str], source: str) -> list[Problem]:
    missing_keys = [key for key in required_keys if key not in entry]
    if not missing_keys:
        return []
    return [
        Problem(
            source,
            f"datalist[{index}] has no {', '.join(map(repr, missing_keys))} key; "
            f"expected keys {required_keys}, found {sorted(entry)}",
        )
    ]


def _check_label(
    index: int, entry: dict, image_key: str, label_key: str, allowed_labels: Sequence | None, source: str
) -> list[Problem]:
    label = entry[label_key]
    if allowed_labels is None or _is_one_of(label, allowed_labels):
        return []
    return [
        Problem(
            source,
            f"datalist[{index}] ({entry.get(image_key, 'no image')}): {label_key} is {label!r}; "
            f"expected one of {list(allowed_labels)}",
        )
    ]


def _check_listed_once(indices_of_image: dict[str, list[int]], source: str) -> list[Problem]:
    problems = []
    for image, indices in indices_of_image.items():
        if len(indices) > 1:
            listed_as = ", ".join(f"datalist[{index}]" for index in indices)
            problems.append(
                Problem(source, f"image {image} is listed {len(indices)} times ({listed_as}); expected once")
            )
    return problems


def _check_both_classes(class_counts: Counter, source: str) -> list[Problem]:
    if class_counts[0] > 0 and class_counts[1] > 0:
        return []
    return [
        Problem(
            source,
            f"does not have both classes: {class_counts[0]} normal (label 0) and {class_counts[1]} abnormal "
            "(label 1) entries; expected both, since stage 1 learns to tell normal from abnormal",
        )
    ]


def _check_exists(path: str) -> list[Problem]:
    if os.path.isdir(path):
        return [Problem(path, "is a folder; expected an image file")]
    if not os.path.isfile(path):
        return [Problem(path, "does not exist; expected an image file")]
    return []


@functools.cache
def _load_image() -> LoadImage:
    """One ``LoadImage`` for the process: building one builds every MONAI reader, and MONAI's nvImageCodec
    DICOM reader logs a warning each time it is built without CUDA (it was once per checked image)."""
    return LoadImage(image_only=True, ensure_channel_first=True)


@functools.cache
def _reader(make_reader: Callable[[], ImageReader]) -> ImageReader:
    return make_reader()


def _image_format(path: str) -> tuple[str, Callable[[], ImageReader]] | None:
    name = path.lower()
    # the longest matching ending wins, so "x.nii.gz" is NIfTI rather than unknown ".gz"
    matches = [(ending, fmt, reader) for ending, fmt, reader in _IMAGE_FORMATS if name.endswith(ending)]
    if not matches:
        return None
    _, format_name, make_reader = max(matches, key=lambda match: len(match[0]))
    return format_name, make_reader


@contextlib.contextmanager
def _pil_rejects_truncated_images() -> Iterator[None]:
    """Make Pillow raise on a truncated file instead of padding it with grey, even where other code
    has set ``ImageFile.LOAD_TRUNCATED_IMAGES`` (the bundle's own loads are not affected)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _check_channels(path: str, image: torch.Tensor, expected: int | Sequence[int] | None) -> list[Problem]:
    if expected is None:
        return []
    allowed = ensure_tuple(expected)
    found = image.shape[0]
    if found in allowed:
        return []
    # Pillow's mode says what the channels are ("RGBA", "L", "P"); other readers give only a count
    mode = image.meta.get("mode")
    found_text = f"{found} channel(s)" + (f" (image mode {mode!r})" if mode else "")
    expected_text = " or ".join(str(count) for count in allowed)
    return [Problem(path, f"has {found_text}; expected {expected_text} channel(s)")]


def _check_size(
    path: str, spatial_size: tuple[int, ...], min_spatial_size: int | Sequence[int] | None
) -> list[Problem]:
    if min_spatial_size is None:
        return []
    needed = ensure_tuple_rep(min_spatial_size, len(spatial_size))
    if all(found >= minimum for found, minimum in zip(spatial_size, needed, strict=True)):
        return []
    return [
        Problem(
            path,
            f"is too small: spatial size {_size_text(spatial_size)}; expected at least {_size_text(needed)}",
        )
    ]


def _check_finite(path: str, image: torch.Tensor) -> list[Problem]:
    if not image.is_floating_point():
        return []
    nan_count = int(torch.isnan(image).sum())
    inf_count = int(torch.isinf(image).sum())
    if nan_count == 0 and inf_count == 0:
        return []
    return [
        Problem(path, f"contains {nan_count} NaN and {inf_count} infinite value(s); expected finite numbers")
    ]


def _is_one_of(value: object, allowed: Sequence) -> bool:
    try:
        return value in allowed
    except (TypeError, ValueError):  # arrays compare element-wise: not a single class label
        return False


def _size_text(size: Sequence[int]) -> str:
    return "x".join(str(int(side)) for side in size)


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {' '.join(str(error).split())}"
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 3] + "..."
