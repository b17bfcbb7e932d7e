"""Baseline pretraining methods: losses on hand-computed examples, and the bundle configs on tiny data."""

import json
import math

import pytest
import torch

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.engines import MultiViewTrainer
from camcontrast_monai.losses import SimCLRLoss, SupConLoss, nt_xent, supcon_loss
from camcontrast_monai.networks import UNetEncoder
from camcontrast_monai.synthetic import write_fundus_dataset

BUNDLE = bundle_path()
E = math.e


def test_simclr_two_views_by_hand():
    # two samples, two views each: 0 -> (1, 0) in both views, 1 -> (0, 1) in both views.
    # Anchor 0 has positive similarity 1 and two negatives with similarity 0 (k != i), so at tau = 1
    # every anchor's loss is -log(e / (e + 2)) = log(1 + 2/e); at tau = 0.5 it is log(1 + 2/e^2).
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert SimCLRLoss(temperature=1.0)(z, z).item() == pytest.approx(math.log(1 + 2 / E), abs=1e-6)
    assert SimCLRLoss(temperature=0.5)(z, z).item() == pytest.approx(math.log(1 + 2 / E**2), abs=1e-6)
    # unnormalised input is L2-normalised first
    assert SimCLRLoss(temperature=1.0)(3 * z, 0.5 * z).item() == pytest.approx(math.log(1 + 2 / E), abs=1e-6)


def test_supcon_two_classes_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # different labels: each anchor's only positive is its other view -> the SimCLR value
    assert supcon_loss(z, z, torch.tensor([0, 1]), 1.0).item() == pytest.approx(math.log(1 + 2 / E), abs=1e-6)
    # same label: anchor (1, 0) has 3 positives with similarities 0, 1, 0 and denominator e^0 + e^1 + e^0;
    # L_out = -1/3 [(0 - log(e + 2)) + (1 - log(e + 2)) + (0 - log(e + 2))] = log(e + 2) - 1/3 for every anchor
    assert supcon_loss(z, z, torch.tensor([1, 1]), 1.0).item() == pytest.approx(math.log(E + 2) - 1 / 3, abs=1e-6)
    # three samples, two classes, tau = 1: a = (1,0), b = (1,0), c = (0,1) in both views, labels 0, 0, 1.
    # Anchor a: others b, c, a', b', c' with similarities 1, 0, 1, 1, 0 -> denominator 3e + 2, positives b, a', b'
    # -> loss log(3e + 2) - 1 (same for b and their second views). Anchor c: others a, b, a', b', c' with
    # similarities 0, 0, 0, 0, 1 -> denominator 4 + e, one positive c' -> loss log(4 + e) - 1.
    z3 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    expected = (4 * (math.log(3 * E + 2) - 1) + 2 * (math.log(4 + E) - 1)) / 6
    assert SupConLoss(temperature=1.0)(z3, z3, torch.tensor([0, 0, 1])).item() == pytest.approx(expected, abs=1e-6)


def test_supcon_matches_a_per_anchor_loop_and_reduces_to_nt_xent():
    generator = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    labels = torch.tensor([0, 1, 1, 0, 2, 1])
    z = torch.nn.functional.normalize(torch.cat([z_a, z_b]), dim=1)
    all_labels = torch.cat([labels, labels])
    total = 0.0
    for i in range(12):
        others = [k for k in range(12) if k != i]
        denominator = sum(math.exp(float(z[i] @ z[k]) / 0.1) for k in others)
        positives = [p for p in others if all_labels[p] == all_labels[i]]
        total += -sum(float(z[i] @ z[p]) / 0.1 - math.log(denominator) for p in positives) / len(positives)
    assert supcon_loss(z_a, z_b, labels, 0.1).item() == pytest.approx(total / 12, rel=1e-5)
    distinct = torch.arange(6)
    assert supcon_loss(z_a, z_b, distinct, 0.05).item() == pytest.approx(nt_xent(z_a, z_b, 0.05).item(), rel=1e-6)


def test_supcon_refuses_wrong_label_count():
    with pytest.raises(ValueError, match="expected 2 labels"):
        supcon_loss(torch.ones(2, 3), torch.ones(2, 3), torch.tensor([0, 1, 1]), 0.1)


def test_multi_view_trainer_feeds_all_views_in_one_batch():
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            seen.append(x.shape[0])
            return x.flatten(1) * self.scale

    received = {}

    def loss(z_1, z_2, labels):
        received.update(z_1=z_1, z_2=z_2, labels=labels)
        return (z_1 - z_2).pow(2).sum() * 0 + z_1.sum()

    network = Recorder()
    trainer = MultiViewTrainer(
        device="cpu", max_epochs=1, train_data_loader=[{}], network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1), loss_function=loss, label_key="label",
    )  # fmt: skip
    batch = {"image": torch.zeros(3, 1, 2, 2), "image_2": torch.ones(3, 1, 2, 2), "label": torch.tensor([[1], [0], [1]])}
    output = trainer.forward_loss(batch)
    assert seen == [6]  # both views through the network together (batch norm sees all 2B crops)
    assert torch.equal(received["z_1"], torch.zeros(3, 4)) and torch.equal(received["z_2"], torch.ones(3, 4))
    assert received["labels"].tolist() == [1, 0, 1]
    assert output["loss"].item() == 0.0


def test_multi_view_trainer_draws_every_view_from_one_crop_with_batch_augmentation():
    draws = []

    def shift_by_draw(images, draw):  # a stand-in augmentation whose output shows which draw made it
        draws.append(draw)
        return images + draw

    received = {}

    def loss(z_1, z_2):
        received.update(z_1=z_1, z_2=z_2)
        return z_1.sum() * 0

    network = torch.nn.Flatten()
    trainer = MultiViewTrainer(
        device="cpu", max_epochs=1, train_data_loader=[{}], network=network, optimizer=None, loss_function=loss,
        batch_augmentation=shift_by_draw,
    )  # fmt: skip
    trainer.state.iteration = 3
    trainer.forward_loss({"image": torch.zeros(2, 1, 2, 2, dtype=torch.uint8)})  # no "image_2": made here
    # view v of iteration i is draw 2i + v: every view of every iteration gets its own draw
    assert draws == [6, 7]
    assert torch.equal(received["z_1"], torch.full((2, 4), 6.0)) and torch.equal(received["z_2"], torch.full((2, 4), 7.0))


@pytest.fixture(scope="module")
def tiny_pretrain(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    write_fundus_dataset(root / "data" / "pretrain", n=8, seed=0, image_size=64)
    common = {
        "bundle_root": str(BUNDLE), "dataset_dir": str(root / "data"), "output_dir": str(root / "runs"),
        "width": 4, "image_size": 32, "num_workers": 0, "pretrain_epochs": 1, "pretrain_batch_size": 4,
    }  # fmt: skip
    return root, common


@pytest.mark.parametrize(
    "method,fixed_crops,batched", [("simclr", True, True), ("supcon", False, True), ("simclr", True, False)]
)  # supce-crop: test_compare
def test_baseline_configs_pretrain_the_shared_encoder_for_the_same_number_of_steps(tiny_pretrain, method, fixed_crops, batched):
    root, common = tiny_pretrain
    encoder_path = root / "models" / f"{method}_{fixed_crops}_{batched}.pt"
    workflow = run_bundle(
        BUNDLE, ["common.json", "pretrain.json", "pretrain_baseline.json", f"pretrain_{method}.json"], "train",
        **{**common, "output_dir": str(root / "runs" / str(batched))}, fixed_crops=fixed_crops,
        batched_augmentation=batched, encoder_path=str(encoder_path),
    )  # fmt: skip
    name = method + ("-crop" if fixed_crops else "")
    history = json.loads((root / "runs" / str(batched) / f"pretrain_{name}" / "loss_history.json").read_text())["loss"]
    # 8 images x 5 fixed crops / batch 4 = 10 steps for one epoch; without fixed crops 8 / 4 = 2 steps per
    # epoch for 5 epochs: the same budget
    assert len(history) == 10 and all(math.isfinite(loss) for _, loss in history)
    sample = workflow.parser.get_parsed_content("train#dataset")[0]
    augmentation = workflow.parser.get_parsed_content("train#batch_augmentation")
    if batched:
        # the loader delivers the unaugmented fixed crop (16 px) or whole image (32 px); the trainer makes
        # both 16-px views, from the crop's scale range or the wider one of random crops
        assert set(sample) & {"image", "image_2"} == {"image"}
        assert tuple(sample["image"].shape) == ((3, 16, 16) if fixed_crops else (3, 32, 32))
        assert augmentation.spatial_size == (16, 16)
        assert tuple(augmentation.scale) == ((0.8, 1.0) if fixed_crops else (0.08, 1.0))
    else:
        assert augmentation is None
        assert all(tuple(sample[key].shape) == (3, 16, 16) for key in ("image", "image_2"))
        assert not torch.equal(sample["image"], sample["image_2"])  # two independent augmentations
    assert ("crop_index" in sample) == fixed_crops
    state = torch.load(encoder_path, weights_only=True)
    torch.manual_seed(0)
    assert set(state) == set(UNetEncoder(2, 3, 4).state_dict())
