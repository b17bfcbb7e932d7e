"""The MONAI bundles that ship inside the package: find them, copy one out as a folder, run their configs.

The repository's ``bundles/`` folder is the only source. A wheel carries it as package data
(``camcontrast_monai/bundles/<name>``); an editable install of a source checkout reads ``bundles/``
beside the package. Either way the demos, the comparison and ``camcontrast bundle export`` find the
same files, from any working directory.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SHIPPED_FILES", "bundle_names", "bundle_path", "bundle_version", "bundles_dir", "export_bundle", "metadata_schema",
    "bundle_item", "bundle_workflow", "is_shipped", "run_bundle",
]  # fmt: skip

PREFIX = "camcontrast_"

# the files of a bundle that ship, relative to its folder: the wheel's package data (pyproject.toml lists
# these under "*/", and tests/test_packaging.py keeps the two equal) and what export_bundle copies; a
# developer's checkout may hold more beside them (run outputs, trained weights, caches)
SHIPPED_FILES = ("LICENSE", "configs/*", "docs/*", "models/.gitkeep")


def is_shipped(relative: Path) -> bool:
    """Whether the file at ``relative`` in a bundle folder ships: it matches :data:`SHIPPED_FILES` as a setuptools
    glob does (``*`` within one folder level, never across ``/``)."""
    parts = relative.parts
    return any(
        len(parts) == len(pattern.split("/")) and all(map(fnmatch.fnmatchcase, parts, pattern.split("/")))
        for pattern in SHIPPED_FILES
    )


def bundles_dir() -> Path:
    """The folder that holds the bundles: package data in a wheel install, ``bundles/`` in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "bundles", package.parent / "bundles"):
        if any(candidate.glob("*/configs/metadata.json")):
            return candidate
    raise FileNotFoundError(
        f"no bundles found in {package / 'bundles'} or {package.parent / 'bundles'}: this installation of "
        "camcontrast-monai is incomplete; reinstall it (pip install camcontrast-monai, or pip install -e . in a checkout)"
    )


def metadata_schema() -> Path:
    """The model zoo's metadata schema (meta_schema_20240725.json, verbatim), so ``verify_metadata`` needs no network."""
    path = bundles_dir().parent / "schemas" / "meta_schema.json"
    if not path.is_file():
        raise FileNotFoundError(f"the metadata schema is missing at {path}: this installation of camcontrast-monai is incomplete")
    return path


def bundle_names() -> list[str]:
    """Names of the shipped bundles, e.g. ``['camcontrast_cxr', 'camcontrast_fundus', 'camcontrast_mri3d']``."""
    return sorted(path.parent.parent.name for path in bundles_dir().glob("*/configs/metadata.json"))


def bundle_path(name: str = "camcontrast_fundus") -> Path:
    """The folder of bundle ``name``; the short form without ``camcontrast_`` (``fundus``, ``cxr``, ``mri3d``) works too."""
    names = bundle_names()
    full = name if name in names else PREFIX + name
    if full not in names:
        raise ValueError(f"unknown bundle {name!r}; the shipped bundles are {', '.join(names)}")
    return bundles_dir() / full


def bundle_version(name: str) -> str:
    """The ``version`` of a bundle's ``configs/metadata.json``."""
    return json.loads((bundle_path(name) / "configs" / "metadata.json").read_text())["version"]


def export_bundle(name: str, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Copy bundle ``name`` to ``out_dir/<name>`` (MONAI's ``bundle download`` layout) and return that folder.

    The copy is an ordinary bundle folder for ``python -m monai.bundle run`` (run it from inside, or pass
    ``--bundle_root``), with the metadata schema at ``eval/schema.json``, where the model zoo's checks
    read it. An existing folder is refused unless ``overwrite`` is true, so a user's trained
    ``models/model.pt`` or edited configs are never replaced by accident.
    """
    source = bundle_path(name)
    target = Path(out_dir).resolve() / source.name
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{target} exists and is not empty; choose another folder or pass --overwrite")
        shutil.rmtree(target)
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and is_shipped(relative):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / relative)
    (target / "eval").mkdir(exist_ok=True)
    shutil.copyfile(metadata_schema(), target / "eval" / "schema.json")
    return target


def bundle_workflow(bundle: Path, configs: Sequence[str], workflow_type: str | None = None, **overrides: Any):
    """The initialized workflow of ``configs`` of ``bundle``, as ``python -m monai.bundle run`` builds it, not yet run."""
    # importing MONAI costs seconds: only the commands that run a bundle pay it
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / name) for name in configs],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    return workflow


def run_bundle(bundle: Path, configs: Sequence[str], workflow_type: str | None = None, **overrides: Any):
    """Run ``configs`` of ``bundle`` in this process exactly as ``python -m monai.bundle run`` would; returns the workflow."""
    workflow = bundle_workflow(bundle, configs, workflow_type, **overrides)
    workflow.run()
    workflow.finalize()
    return workflow


def bundle_item(
    item: str, configs: Sequence[str] = ("common.json",), bundle: Path | None = None, compose: bool = True, **overrides: Any
) -> Any:  # fmt: skip
    """One item of a bundle's configs, built by MONAI's ``ConfigParser`` as a run of the bundle builds it.

    For example ``bundle_item("load_image", image_size=128)`` or ``bundle_item("train#crop_transform",
    ["common.json", "pretrain.json"])``; a list (of transforms) comes back as a ``Compose`` unless ``compose``
    is False (a list of sizes). The benchmarks,
    the comparison and the demos read the shipped transforms this way instead of writing them again.
    ``bundle`` defaults to the fundus bundle.
    """
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    bundle = bundle or bundle_path()
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / name) for name in configs])
    parser.update({"bundle_root": str(bundle), **overrides})
    content = parser.get_parsed_content(item)
    return Compose(content) if compose and isinstance(content, list) else content

