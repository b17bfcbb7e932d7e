"""The generated bundle configs equal what scripts/bundle_configs.py builds from bundle_configs and common.json."""

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bundle_configs.py"
generator = runpy.run_path(str(SCRIPT))


def test_committed_configs_are_the_generated_ones():
    checked = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {path.parent.parent.name for path in generator["generated_configs"]()} == {
        "camcontrast_cxr", "camcontrast_fundus", "camcontrast_mri3d"
    }  # fmt: skip


def test_a_standalone_config_takes_exactly_what_it_reaches():
    common = {
        "imports": ["$import torch"],
        "root": ".",
        "data": "$@root + '/data'",
        "images": "$@data + '/images'",
        "labels": "$@data + '/labels.csv'",  # not reached
        "width": 8,
        "net": {"_target_": "Net", "width": "@width"},
        "trainer": {"net": "@net"},  # not reached
    }
    piece = {"+imports": ["$import glob", "$import torch"], "datalist": "$glob.glob(@images)", "network": "$@net#width"}
    config = generator["standalone"](piece, common)
    assert list(config) == ["imports", "root", "data", "images", "width", "net", "datalist", "network"]
    assert config["imports"] == ["$import torch", "$import glob"]
    assert config["net"] == common["net"] and config["network"] == "$@net#width"


def test_the_piece_wins_over_common():
    config = generator["standalone"]({"batch": 4, "loader": "@batch"}, {"batch": 16})
    assert config == {"imports": [], "batch": 4, "loader": "@batch"}


def test_no_config_picks_a_handler_by_its_list_index():
    """An overlay or a reference like train#handlers#3 silently hits another handler when the list changes."""
    import re

    indexed = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in sorted((REPO / "bundles").glob("*/configs/*.json"))
        for match in re.finditer(r"handlers#\d+", path.read_text())
    ]
    assert not indexed, "\n".join(indexed)


def test_a_part_merges_into_sections_and_replaces_everything_else():
    piece = {"epochs": 60, "train": {"dataset": {"cache_rate": 0.0, "data": "@splits"}, "handlers": ["@a", "@b"]}, "run": ["$@t.run()"]}
    part = {"task": "grading", "epochs": 300, "train": {"dataset": {"cache_rate": 1.0}, "handlers": ["@c"]}}
    config = generator["composed"](piece, part)
    assert list(config) == ["task", "epochs", "train", "run"]  # the part's own items first, then the piece's order
    assert config["epochs"] == 300 and config["run"] == ["$@t.run()"]
    assert config["train"]["dataset"] == {"cache_rate": 1.0, "data": "@splits"}
    assert config["train"]["handlers"] == ["@c"]  # lists replace whole, never by position
    assert piece["train"]["dataset"]["cache_rate"] == 0.0, "the piece itself is left as it was"


def test_every_bundle_part_names_a_config_it_is_composed_into():
    parts = {(path.parent.name, path.name) for path in (REPO / "bundle_configs").glob("camcontrast_*/*.json")}
    composed = {(bundle, name) for name, (_, bundles) in generator["COMPOSED"].items() for bundle in bundles}
    assert parts == composed


def test_bundle_item_builds_the_shipped_load_chain(tmp_path):
    """What the benchmarks and the comparison read through ``bundle_item`` is the bundle's own transform:
    a 64-px PNG loaded at image_size 32 is its 2x2 area means, channel first, scaled to [0, 1]."""
    from PIL import Image

    from camcontrast_monai.apps.bundle import bundle_item

    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")
    loaded = bundle_item("load_image", image_size=32)({"image": str(tmp_path / "image.png")})["image"]
    expected = pixels.astype(np.float64).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1) / 255
    assert tuple(loaded.shape) == (3, 32, 32)
    np.testing.assert_allclose(np.asarray(loaded), expected, atol=1e-5)


@pytest.mark.parametrize("bundle", ["fundus", "cxr", "mri3d"])
def test_every_training_config_fuses_its_optimizer_where_torch_can(bundle):
    import torch
    from monai.bundle import ConfigParser

    from camcontrast_monai.apps.bundle import bundle_path
    from camcontrast_monai.engines import fused_supported, named_optimizer

    root = bundle_path(bundle)
    configs = sorted(p.name for p in (root / "configs").glob("*.json") if p.name.startswith(("stage1", "pretrain.", "finetune")))
    assert "stage1.json" in configs and "pretrain.json" in configs and "finetune_cls.json" in configs
    for name in configs:
        for switch in (None, False):  # the bundle's own value on a CPU, then switched off
            parser = ConfigParser()
            parser.read_config([str(root / "configs" / "common.json"), str(root / "configs" / name)])
            # a stand-in network: the optimiser is what is checked, not the model a task's data would shape
            parser.update({"bundle_root": str(root), "network": "$torch.nn.Linear(2, 2)", "seg_task": "lesions"})
            if switch is not None:
                parser["fused_optimizer"] = switch
            optimizer = parser.get_parsed_content("optimizer")
            assert isinstance(optimizer, (torch.optim.SGD, torch.optim.AdamW)), name
            assert bool(optimizer.defaults["fused"]) is (switch is None), name
    assert fused_supported("cpu") and fused_supported(torch.device("cuda", 1)) and not fused_supported("meta")
    assert named_optimizer("sgd", torch.nn.Linear(2, 2).parameters(), lr=0.1, fused=True).defaults["fused"] is True
