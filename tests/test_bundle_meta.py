"""The fundus bundle as a MONAI model-zoo bundle: metadata, network I/O, TorchScript export, local load, inference.

Everything runs offline: the metadata schema is the copy in ``schemas/meta_schema.json`` and every
test that could reach for the network runs with sockets and MONAI's downloader disabled.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import monai.apps.utils
import monai.bundle
import monai.bundle.scripts
import numpy as np
import pytest
import torch
from PIL import Image

from camcontrast_monai.networks import UNetEncoder

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
BUNDLE = BUNDLES / "camcontrast_fundus"
CONFIGS = BUNDLE / "configs"
SCHEMA = BUNDLES.parent / "schemas" / "meta_schema.json"
META = CONFIGS / "metadata.json"
LOGGING_CONF = CONFIGS / "logging.conf"
INFER_CONFIGS = [str(CONFIGS / "inference.json")]  # the model zoo reads inference.json alone
# md5 of the committed schema copy: meta_schema_20240725.json as mirrored verbatim (from the MONAI-extra-test-data
# 0.8.1 release) in Project-MONAI/project-monai.github.io public/schema/; guards against accidental edits
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _encoder_state(width: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    encoder = UNetEncoder(spatial_dims=2, in_channels=3, width=width)
    # non-trivial BatchNorm statistics, so a load that silently skipped buffers would show
    for module in encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return encoder.state_dict()


def _eager(state: dict[str, torch.Tensor], width: int = 2) -> UNetEncoder:
    encoder = UNetEncoder(spatial_dims=2, in_channels=3, width=width)
    encoder.load_state_dict(state)
    return encoder.eval()


def test_metadata_verifies_offline_against_repo_schema(no_network):
    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == SCHEMA_MD5, "bundles/schema/meta_schema.json differs from the published schema"
    # with the file in place (and its hash checked), verify_metadata skips the download
    monai.bundle.verify_metadata(meta_file=str(META), filepath=str(SCHEMA), hash_val=SCHEMA_MD5, hash_type="md5")
    monai.bundle.verify_metadata(meta_file=str(META), filepath=str(SCHEMA))


def test_metadata_violation_is_reported(no_network, tmp_path):
    broken = json.loads(META.read_text())
    del broken["network_data_format"]
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="network_data_format"):
        monai.bundle.verify_metadata(meta_file=str(path), filepath=str(SCHEMA))


def test_network_io_matches_metadata():
    """Full-width encoder (1024 output channels as the metadata says) on a small 32x32 fake input."""
    monai.bundle.verify_net_in_out(
        net_id="network_def",
        meta_file=str(META),
        config_file=INFER_CONFIGS,
        device="cpu",
        bundle_root=str(BUNDLE),
        **{"_meta_#network_data_format#inputs#image#spatial_shape": ["16*n", "16*n"]},
        n=2,
    )
    # and a reduced width, with the expected channel count overridden to 16 * width
    monai.bundle.verify_net_in_out(
        net_id="network_def",
        meta_file=str(META),
        config_file=INFER_CONFIGS,
        device="cpu",
        bundle_root=str(BUNDLE),
        width=2,
        **{
            "_meta_#network_data_format#inputs#image#spatial_shape": [32, 48],
            "_meta_#network_data_format#outputs#pred#num_channels": 32,
        },
    )


def test_torchscript_export_matches_eager(tmp_path):
    state = _encoder_state(width=2)
    ckpt = tmp_path / "model.pt"
    torch.save(state, ckpt)
    ts_path = tmp_path / "model.ts"
    monai.bundle.ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(ckpt),
        meta_file=str(META),
        config_file=INFER_CONFIGS,
        bundle_root=str(BUNDLE),
        width=2,
    )
    assert ts_path.is_file()
    scripted = torch.jit.load(str(ts_path), map_location="cpu").eval()
    eager = _eager(state)
    with torch.no_grad():
        for shape in [(1, 3, 32, 32), (2, 3, 48, 64)]:  # a scripted graph works at any size divisible by 16
            x = torch.rand(*shape)
            expected = eager(x)
            got = scripted(x)
            assert got.shape == (shape[0], 32, shape[2] // 16, shape[3] // 16)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the TorchScript file carries the bundle metadata and configs
    _, meta, extra = monai.data.load_net_with_metadata(str(ts_path), more_extra_files=("inference.json",))
    assert meta["version"] == json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 1024
    assert "network_def" in json.loads(extra["inference.json"])


def _local_bundle_copy(root: Path, state: dict[str, torch.Tensor]) -> Path:
    bundle_dir = root / "bundles"
    copy = bundle_dir / "camcontrast_fundus"
    shutil.copytree(BUNDLE, copy, ignore=shutil.ignore_patterns("models", "runs", "data"))
    (copy / "models").mkdir()
    torch.save(state, copy / "models" / "model.pt")
    return bundle_dir


def test_bundle_load_from_local_directory(no_network, tmp_path):
    state = _encoder_state(width=2)
    bundle_dir = _local_bundle_copy(tmp_path, state)

    # with a model: only the weights are read (torch.load weights_only=True), no config is parsed
    model = monai.bundle.load(
        name="camcontrast_fundus",
        bundle_dir=str(bundle_dir),
        model=UNetEncoder(spatial_dims=2, in_channels=3, width=2),
        source="github",
        device="cpu",
        progress=False,
    )
    assert isinstance(model, UNetEncoder)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])

    # without a model: there is no configs/train.json, so load() returns the plain state dict
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights = monai.bundle.load(
            name="camcontrast_fundus", bundle_dir=str(bundle_dir), source="github", device="cpu", progress=False
        )
    assert set(weights) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(weights[key], value)


def _write_pngs(folder: Path, n: int = 3, size: int = 32) -> list[str]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i}_left.png"
        Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8), mode="RGB").save(path)
        paths.append(str(path))
    return paths


def test_inference_workflow_writes_embeddings(no_network, restore_logging, tmp_path):
    state = _encoder_state(width=2)
    ckpt = tmp_path / "model.pt"
    torch.save(state, ckpt)
    paths = _write_pngs(tmp_path / "downstream" / "images")
    out = tmp_path / "out"

    workflow = monai.bundle.ConfigWorkflow(
        config_file=INFER_CONFIGS,
        meta_file=str(META),
        logging_file=str(LOGGING_CONF),
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        dataset_dir=str(tmp_path),
        output_dir=str(out),
        encoder_path=str(ckpt),
        device="$torch.device('cpu')",
        num_workers=0,
        width=2,
        image_size=32,
        inference_batch_size=2,
    )
    workflow.initialize()
    assert workflow.check_properties() == []  # every InferProperties entry is there, optional ones with the right ids
    assert workflow.parser.get_parsed_content("datalist") == paths  # the default datalist finds every image under dataset_dir/downstream/images
    workflow.run()
    workflow.finalize()

    with np.load(out / "embeddings.npz", allow_pickle=False) as saved:
        embeddings, images = saved["embeddings"], saved["images"]
    assert embeddings.shape == (3, 32) and embeddings.dtype == np.float32
    assert [str(p) for p in images] == paths

    encoder = _eager(state)
    with torch.no_grad():
        for path, got in zip(paths, embeddings, strict=True):
            x = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
            expected = encoder(x).flatten(2).mean(dim=2)[0].numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
