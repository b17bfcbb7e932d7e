import math

import pytest
import torch
from monai.losses import ContrastiveLoss

from camcontrast_monai.losses import AttentionLoss, CAMClassifierLoss, ImageHeatmapNTXentLoss


def eq5_loop(z_image, z_heatmap, tau):
    """Eq. 5 written literally, in float64, one anchor at a time (Algorithm 1 lines 24-29)."""
    z = torch.cat([z_image, z_heatmap]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n = z.shape[0]
    b = n // 2
    total = 0.0
    for i in range(n):
        j = i + b if i < b else i - b
        denominator = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / denominator)
    return total / n


def test_ntxent_hand_computed_orthogonal_pairs():
    # each anchor: positive similarity 1, two negatives with similarity 0 -> -log(e / (e + 2)) at tau = 1
    eye = torch.eye(2)
    loss = ImageHeatmapNTXentLoss(temperature=1.0)(eye, eye)
    assert loss.item() == pytest.approx(math.log(math.e + 2) - 1, abs=1e-6)


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.05])
def test_ntxent_matches_literal_loop(tau):
    torch.manual_seed(0)
    z_image, z_heatmap = torch.randn(5, 8), torch.randn(5, 8)
    loss = ImageHeatmapNTXentLoss(temperature=tau)(z_image, z_heatmap)
    assert loss.item() == pytest.approx(eq5_loop(z_image, z_heatmap, tau), rel=1e-5)


def test_ntxent_equals_monai_contrastive_loss_where_that_is_finite():
    torch.manual_seed(1)
    z_image, z_heatmap = torch.randn(6, 16), torch.randn(6, 16)
    ours = ImageHeatmapNTXentLoss(temperature=0.5)(z_image, z_heatmap)
    monai = ContrastiveLoss(temperature=0.5)(z_image, z_heatmap)
    assert ours.item() == pytest.approx(monai.item(), rel=1e-5)


def test_ntxent_is_stable_at_tau_001():
    torch.manual_seed(2)
    z_image = torch.randn(16, 128, requires_grad=True)
    z_heatmap = torch.randn(16, 128)
    loss = ImageHeatmapNTXentLoss(temperature=0.01)(z_image, z_heatmap)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_image.grad).all()
    assert loss.item() == pytest.approx(eq5_loop(z_image.detach(), z_heatmap, 0.01), rel=1e-5)


def test_ntxent_of_identical_empty_heatmaps_pulls_normals_together():
    # all normal crops share one "empty heatmap" prototype: their image vectors should all sit on it
    prototype = torch.tensor([[1.0, 0.0, 0.0]]).repeat(3, 1)
    aligned = ImageHeatmapNTXentLoss(0.1)(prototype.clone(), prototype)
    scattered = ImageHeatmapNTXentLoss(0.1)(torch.eye(3), prototype)
    assert aligned < scattered


def test_ntxent_rejects_mismatched_shapes_and_bad_temperature():
    with pytest.raises(ValueError, match="equal shape"):
        ImageHeatmapNTXentLoss()(torch.zeros(4, 8), torch.zeros(3, 8))
    with pytest.raises(ValueError, match="positive"):
        ImageHeatmapNTXentLoss(temperature=0.0)


def attention_per_sample(cam, logit, label):
    """Eq. 4 for one sample, in plain Python: min-max each class map, mean of 1 - M0 + M1."""
    p_normal = torch.softmax(logit.double(), 0)[0].item()
    if not (label == 0 and p_normal >= 0.5):
        return 0.0
    maps = []
    for c in (0, 1):
        values = cam[c].double().flatten().tolist()
        low, high = min(values), max(values)
        maps.append([(v - low) / (high - low) if high > low else 0.0 for v in values])
    return sum(1 - m0 + m1 for m0, m1 in zip(*maps, strict=True)) / len(maps[0])


def test_attention_loss_hand_computed():
    cams = torch.tensor(
        [
            [[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 9.0]]],  # M0 -> mean 0.5, M1 -> mean 0.25
            [[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 9.0]]],  # label 1: does not contribute
        ]
    )
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1])
    # (1 - 0.5 + 0.25) for the one true negative, divided by the batch size 2
    assert AttentionLoss()(cams, logits, labels).item() == pytest.approx(0.375)


def test_attention_loss_batch_equals_per_sample_loop():
    # the public reference normalises every CAM by every other image's range when B > 1
    torch.manual_seed(3)
    cams = torch.randn(6, 2, 5, 4) * torch.arange(1, 7).view(6, 1, 1, 1)
    logits = torch.tensor([[3.0, 0.0], [0.0, 3.0], [1.0, 0.5], [0.2, 0.1], [2.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 0, 1, 0, 0])  # sample 1 and 5 predicted abnormal, sample 3 abnormal
    expected = sum(attention_per_sample(cams[i], logits[i], labels[i]) for i in range(6)) / 6
    assert expected > 0
    assert AttentionLoss()(cams, logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_attention_loss_constant_cams_are_finite():
    cams = torch.ones(2, 2, 3, 3, requires_grad=True)
    loss = AttentionLoss()(cams, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0]))
    loss.backward()
    assert loss.item() == pytest.approx(1.0)  # M0 = M1 = 0 -> 1 - 0 + 0
    assert torch.isfinite(cams.grad).all()


def test_attention_loss_works_on_3d_cams():
    torch.manual_seed(4)
    cams = torch.randn(2, 2, 3, 4, 2)
    logits, labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0])
    expected = sum(attention_per_sample(cams[i], logits[i], labels[i]) for i in range(2)) / 2
    assert AttentionLoss()(cams, logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_stage1_loss_is_cross_entropy_plus_weighted_attention():
    torch.manual_seed(5)
    cams, logits = torch.randn(4, 2, 3, 3), torch.randn(4, 2)
    labels = torch.tensor([0, 1, 0, 0])
    terms = CAMClassifierLoss()(logits, cams, labels), CAMClassifierLoss().terms(logits, cams, labels)
    total, parts = terms
    ce = torch.nn.functional.cross_entropy(logits, labels)
    attention = AttentionLoss()(cams, logits, labels)
    assert parts["cross_entropy"].item() == pytest.approx(ce.item())
    assert parts["attention"].item() == pytest.approx(attention.item())
    assert total.item() == pytest.approx(ce.item() + 0.01 * attention.item())
    assert CAMClassifierLoss(attention_weight=0.0)(logits, cams, labels).item() == pytest.approx(ce.item())


def test_stage1_loss_rejects_wrong_label_count():
    with pytest.raises(ValueError, match="expected 2 labels"):
        CAMClassifierLoss()(torch.zeros(2, 2), torch.zeros(2, 2, 3, 3), torch.tensor([0, 1, 0]))


def test_collapsed_value_and_the_floor_that_identical_heatmaps_impose():
    from camcontrast_monai.losses import collapsed_ntxent, nt_xent, ntxent_floor

    assert collapsed_ntxent(40) == pytest.approx(math.log(79))
    # every projection the same vector: Eq. 5 is log(2B - 1) exactly
    same = torch.ones(6, 4)
    assert float(nt_xent(same, same, 0.05)) == pytest.approx(collapsed_ntxent(6), abs=1e-5)
    # no tied heatmaps: distinct pairs can be pulled apart until the loss vanishes
    assert ntxent_floor(8, 0, steps=300) < 1e-3
    # all heatmaps tied: images can barely be told apart, the floor sits just under the collapsed value
    assert collapsed_ntxent(8) - 0.02 < ntxent_floor(8, 8, steps=300) <= collapsed_ntxent(8) + 1e-4
    # half tied: between n log n / B and n log(2n - 1) / B
    floor = ntxent_floor(16, 8, steps=300)
    assert 8 * math.log(8) / 16 - 1e-6 <= floor <= 8 * math.log(15) / 16 + 1e-3
    with pytest.raises(ValueError, match="n_identical"):
        ntxent_floor(4, 5)


def test_one_nt_xent_serves_camcontrast_and_simclr():
    from camcontrast_monai.losses import NTXentLoss, SimCLRLoss

    assert ImageHeatmapNTXentLoss is NTXentLoss and SimCLRLoss is NTXentLoss
    loss = NTXentLoss(0.1, gather_distributed=False)
    assert loss.temperature == 0.1 and not loss.gather_distributed and NTXentLoss().gather_distributed
