"""Build the bundles' generated configs from ``bundle_configs`` and each bundle's ``configs/common.json``.

    python scripts/bundle_configs.py           # write them
    python scripts/bundle_configs.py --check   # exit 1, naming the files, where a committed config differs

- :data:`COPIED`: ``heatmaps.json``, the ``multi_gpu_*.json`` overlays and the 2D baseline configs are
  the same in every bundle that has them, and copied as they are.
- :data:`COMPOSED`: ``stage1.json``, ``pretrain.json`` and the fine-tuning configs are a shared piece
  with the bundle's own part, ``bundle_configs/<bundle>/<config>``, laid over it (:func:`merged`).
- ``inference.json`` must stand alone: MONAI's model-zoo tools read it without ``common.json``. It is the
  shared inference piece plus exactly the items of the bundle's ``common.json`` that the piece reaches
  through ``@`` references, so there is one place to edit each value.

See ``bundle_configs/README.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
SHARED = BUNDLES.parent / "bundle_configs"
ALL = ("camcontrast_cxr", "camcontrast_fundus", "camcontrast_mri3d")
TWO_D = ("camcontrast_cxr", "camcontrast_fundus")
# pieces that bundles carry as they are: {config name in the bundle: (piece, the bundles that carry it)}
COPIED = {
    "heatmaps.json": ("heatmaps.json", ALL),
    "multi_gpu_stage1.json": ("multi_gpu_stage1.json", ALL),
    "multi_gpu_pretrain.json": ("multi_gpu_pretrain.json", ALL),
    "multi_gpu_finetune.json": ("multi_gpu_finetune.json", ALL),
    # stage 2's baselines in 2D; the 3D bundle has none yet
    **{name: (name, TWO_D) for name in ("pretrain_baseline.json", "pretrain_simclr.json", "pretrain_supce.json", "pretrain_supcon.json")},
}
# configs made of a shared piece and each bundle's own part: {config name: (piece, the bundles that have it)};
# the part is bundle_configs/<bundle>/<config name>
COMPOSED = {
    "stage1.json": ("stage1.json", ALL),
    "pretrain.json": ("pretrain.json", ALL),
    "finetune_cls.json": ("finetune.json", ALL),
    "finetune_seg.json": ("finetune.json", TWO_D),
    "finetune_glaucoma.json": ("finetune.json", ("camcontrast_fundus",)),
}
# an @ reference's top-level id: "@load_image", "@train#trainer" -> "train"
REFERENCE = re.compile(r"@(\w+)")


def references(value: object) -> set[str]:
    """Top-level ids that ``value`` (a config item, nested or not) refers to with ``@``."""
    if isinstance(value, str):
        return set(REFERENCE.findall(value))
    if isinstance(value, dict):
        return set().union(*(references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(references(v) for v in value))
    return set()


def needed_items(piece: dict, common: dict) -> list[str]:
    """Ids of ``common`` reached from ``piece`` through references, in ``common``'s order."""
    needed, pending = set(), set(references(piece))
    while pending:
        name = pending.pop()
        if name in common and name not in needed and name not in piece:
            needed.add(name)
            pending |= references(common[name])
    return [name for name in common if name in needed]


def standalone(piece: dict, common: dict) -> dict:
    """``piece`` made self-contained with what it needs of ``common``; ``+imports`` joins common's imports."""
    config = {"imports": list(common.get("imports", []))}
    config["imports"] += [line for line in piece.get("+imports", []) if line not in config["imports"]]
    config.update({name: common[name] for name in needed_items(piece, common)})
    config.update({key: value for key, value in piece.items() if key != "+imports"})
    return config


def merged(piece: dict, part: dict) -> dict:
    """``part`` laid over ``piece``: sections (dicts) merge key by key, any other value of ``part`` replaces.

    Lists replace whole, so a part never edits a handler list by position; the piece names what a task may
    change instead (``progress_desc``, ``eval_transforms``, ``report_info``, ...).
    """
    config = dict(piece)
    for key, value in part.items():
        config[key] = merged(piece[key], value) if isinstance(value, dict) and isinstance(piece.get(key), dict) else value
    return config


def composed(piece: dict, part: dict) -> dict:
    """A whole config from the shared ``piece`` and a bundle's ``part``; the part's own items come first."""
    config = merged(piece, part)
    return {**{key: config[key] for key in part if key not in piece}, **config}


def render(value: dict) -> str:
    return json.dumps(value, indent=4, ensure_ascii=False) + "\n"


def generated_configs() -> dict[Path, str]:
    """Every generated config file of every bundle, with the text it should have."""
    piece = json.loads((SHARED / "inference.json").read_text())
    files = {}
    for common_path in sorted(BUNDLES.glob("*/configs/common.json")):
        common = json.loads(common_path.read_text())
        files[common_path.with_name("inference.json")] = render(standalone(piece, common))
        bundle = common_path.parent.parent.name
        files.update({
            common_path.with_name(name): (SHARED / piece).read_text() for name, (piece, bundles) in COPIED.items() if bundle in bundles
        })  # fmt: skip
        for name, (shared, bundles) in COMPOSED.items():
            if bundle in bundles:
                part = json.loads((SHARED / bundle / name).read_text())
                files[common_path.with_name(name)] = render(composed(json.loads((SHARED / shared).read_text()), part))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed config differs")
    args = parser.parse_args(argv)
    configs = generated_configs()
    stale = [path for path, text in configs.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(BUNDLES.parent)} differs from what scripts/bundle_configs.py builds; run it and commit")
        return 1 if stale else 0
    for path in stale:
        path.write_text(configs[path])
        print(f"wrote {path.relative_to(BUNDLES.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
