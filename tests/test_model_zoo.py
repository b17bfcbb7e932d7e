"""Every bundle, exported as a user gets it, through the checks the MONAI model zoo's CI runs.

The model zoo (ci/verify_bundle.py, full mode) checks: the required files; version and changelog;
metadata against the schema; the network's input and output shapes with ``verify_net_in_out``; a
TorchScript export with ``ckpt_export``. Each reads ``configs/inference.json`` alone. The zoo makes
fake weights from ``network_def`` for the export; so do these tests. The one check that cannot pass
is the preferred file ``models/model.pt``: no trained weights ship (see the bundle READMEs).
"""

import json
import subprocess
import sys
from pathlib import Path

import monai.bundle
import numpy as np
import pytest
import torch
from PIL import Image

from camcontrast_monai.apps.bundle import bundle_names, export_bundle

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module", params=bundle_names())
def bundle(request, tmp_path_factory) -> Path:
    return export_bundle(request.param, tmp_path_factory.mktemp("zoo"))


def _files(bundle: Path) -> tuple[str, str]:
    return str(bundle / "configs" / "metadata.json"), str(bundle / "configs" / "inference.json")


def _network(bundle: Path, **overrides) -> torch.nn.Module:
    parser = monai.bundle.ConfigParser()
    parser.read_config(_files(bundle)[1])
    parser.read_meta(_files(bundle)[0])
    for key, value in {"bundle_root": str(bundle), **overrides}.items():
        parser[key] = value
    return parser.get_parsed_content("network_def")


def test_required_files_version_and_metadata(bundle, no_network):
    for name in ("configs/metadata.json", "configs/inference.json", "LICENSE", "docs/README.md", "docs/data_license.txt"):
        assert (bundle / name).is_file(), name
    assert not (bundle / "models" / "model.pt").exists()  # the model zoo's preferred file: no trained weights ship
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    # eval/schema.json, where the model zoo's verify_bundle.py reads the schema; export puts our offline copy there
    monai.bundle.verify_metadata(meta_file=_files(bundle)[0], filepath=str(bundle / "eval" / "schema.json"))


def test_network_shapes_from_inference_json_alone(bundle):
    """At the metadata's own full input size and full width, as the zoo runs it."""
    meta_file, config_file = _files(bundle)
    monai.bundle.verify_net_in_out(net_id="network_def", meta_file=meta_file, config_file=config_file, bundle_root=str(bundle), device="cpu")


def test_torchscript_export_from_inference_json_alone(bundle, tmp_path):
    meta_file, config_file = _files(bundle)
    torch.manual_seed(0)
    network = _network(bundle, width=4).eval()  # the zoo's fake weights, at a width that keeps the file small
    torch.save(network.state_dict(), tmp_path / "model.pt")
    monai.bundle.ckpt_export(
        net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(tmp_path / "model.pt"),
        meta_file=meta_file, config_file=config_file, bundle_root=str(bundle), width=4,
    )  # fmt: skip
    scripted = torch.jit.load(str(tmp_path / "model.ts"), map_location="cpu").eval()
    spatial = (32, 48) if "mri3d" not in bundle.name else (32, 48, 32)
    x = torch.rand(1, network_channels(meta_file), *spatial)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), network(x), rtol=1e-5, atol=1e-6)


def network_channels(meta_file: str) -> int:
    return json.loads(Path(meta_file).read_text())["network_data_format"]["inputs"]["image"]["num_channels"]


def test_bundle_load_builds_the_inference_network_with_the_weights(bundle, no_network, restore_logging):
    torch.manual_seed(1)
    state = _network(bundle).state_dict()
    (bundle / "models").mkdir(exist_ok=True)
    torch.save(state, bundle / "models" / "model.pt")
    try:
        loaded = monai.bundle.load(
            name=bundle.name, bundle_dir=str(bundle.parent), workflow_type="inference", source="github", device="cpu", progress=False
        )
    finally:
        (bundle / "models" / "model.pt").unlink()
    assert set(loaded.state_dict()) == set(state)
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_python_m_monai_bundle_run_with_inference_json_alone(tmp_path):
    """A true command line, from inside an exported fundus bundle, with the weights it loads through CheckpointLoader."""
    bundle = export_bundle("camcontrast_fundus", tmp_path)
    torch.manual_seed(2)
    network = _network(bundle, width=2).eval()
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    images = tmp_path / "photos"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"eye{index}.png")
    command = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", "--meta_file",
        "configs/metadata.json", "--logging_file", "configs/logging.conf", "--image_dir", str(images), "--width", "2",
        "--image_size", "32", "--num_workers", "0", "--device", "$torch.device('cpu')",
    ]  # fmt: skip
    ran = subprocess.run(command, cwd=bundle, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    with np.load(bundle / "runs" / "embeddings.npz", allow_pickle=False) as saved:
        assert [Path(p).name for p in saved["images"]] == ["eye0.png", "eye1.png", "eye2.png"]
        first = torch.from_numpy(np.asarray(Image.open(images / "eye0.png"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            expected = network(first).flatten(2).mean(dim=2)[0].numpy()
        np.testing.assert_allclose(saved["embeddings"][0], expected, rtol=1e-4, atol=1e-5)
