import logging

import pytest
import torch
import torch.nn.functional as F

from camcontrast_monai.networks import CAMClassifier, CAMContrastNet, UNetEncoder, global_average_pool
from camcontrast_monai.networks.downstream import (
    EncoderClassifier,
    MultiHeadCrossEntropyLoss,
    encoder_classifier,
    load_encoder_weights,
    pretrained_unet,
)

WIDTH = 4


class NotATensor:
    """Something a weights-only unpickler must refuse."""


def trained_looking_encoder(width: int = WIDTH) -> UNetEncoder:
    """An encoder whose BatchNorm statistics moved too, so buffers are checked as well as parameters."""
    encoder = UNetEncoder(spatial_dims=2, in_channels=3, width=width)
    encoder(torch.randn(2, 3, 32, 32))
    return encoder


def assert_holds_encoder(module: torch.nn.Module, encoder_state: dict, prefix: str = "") -> None:
    module_state = module.state_dict()
    for key, value in encoder_state.items():
        assert torch.equal(module_state[prefix + key], value), key


# ---- load_encoder_weights


def test_encoder_weights_change_and_equal_the_unet_encoder(caplog):
    encoder = trained_looking_encoder()
    unet = pretrained_unet(width=WIDTH)
    assert not torch.equal(unet.conv_0.conv_0.conv.weight, encoder.conv_0.conv_0.conv.weight)
    decoder_before = unet.final_conv.weight.detach().clone()

    with caplog.at_level(logging.INFO, logger="camcontrast_monai.networks.downstream"):
        loaded = load_encoder_weights(unet, encoder.state_dict(), source="stage-2 run")

    assert sorted(loaded) == sorted(encoder.state_dict())
    assert_holds_encoder(unet, encoder.state_dict())
    assert torch.equal(unet.final_conv.weight, decoder_before)
    assert f"loaded {len(loaded)} tensors from stage-2 run" in caplog.text


def test_whole_stage2_model_state_dict_loads_its_image_encoder():
    net = CAMContrastNet(
        spatial_dims=2, in_channels=3, width=WIDTH, projection_dim=8, heatmap_channels=(2, 2, 2)
    )
    net.image_encoder(torch.randn(2, 3, 32, 32))
    unet = pretrained_unet(width=WIDTH, encoder_weights=net.state_dict())
    assert_holds_encoder(unet, net.image_encoder.state_dict())


def test_stage1_classifier_state_dict_loads_into_a_classifier_encoder():
    stage1 = CAMClassifier(spatial_dims=2, in_channels=3, width=WIDTH)
    stage1.encoder(torch.randn(2, 3, 32, 32))
    classifier = encoder_classifier(width=WIDTH)
    loaded = load_encoder_weights(classifier, stage1.state_dict(), prefix="encoder.")
    assert all(key.startswith("encoder.") for key in loaded)
    assert_holds_encoder(classifier, stage1.encoder.state_dict(), prefix="encoder.")


def test_width_mismatch_names_the_key():
    unet = pretrained_unet(width=WIDTH)
    with pytest.raises(ValueError, match="small-encoder") as error:
        load_encoder_weights(unet, UNetEncoder(2, 3, width=2).state_dict(), source="small-encoder")
    assert "conv_0.conv_0.conv.weight: (2, 3, 3, 3) vs (4, 3, 3, 3)" in str(error.value)


@pytest.mark.parametrize("weights", [{}, {"backbone.weight": torch.zeros(3)}], ids=["empty", "unrelated"])
def test_empty_or_unrelated_state_dicts_are_refused(weights):
    with pytest.raises(ValueError):
        load_encoder_weights(pretrained_unet(width=WIDTH), weights)


def test_loading_weights_the_module_already_has_is_refused():
    encoder = UNetEncoder(2, 3, width=WIDTH)
    with pytest.raises(ValueError, match="changed no weight"):
        load_encoder_weights(encoder, encoder.state_dict())


def test_multi_object_checkpoint_must_be_unpacked():
    encoder = UNetEncoder(2, 3, width=WIDTH)
    with pytest.raises(ValueError, match="not tensors"):
        load_encoder_weights(pretrained_unet(width=WIDTH), {"net": encoder.state_dict(), "epoch": 3})


def test_state_dict_file_round_trip(tmp_path, caplog):
    encoder = trained_looking_encoder()
    path = tmp_path / "encoder.pt"
    torch.save(encoder.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="camcontrast_monai.networks.downstream"):
        unet = pretrained_unet(width=WIDTH, encoder_weights=path)
        classifier = encoder_classifier(width=WIDTH, encoder_weights=str(path))
    assert_holds_encoder(unet, encoder.state_dict())
    assert_holds_encoder(classifier, encoder.state_dict(), prefix="encoder.")
    assert str(path) in caplog.text


def test_pickled_objects_are_refused_with_the_file_name(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"weights": torch.zeros(1), "meta": NotATensor()}, path)
    with pytest.raises(ValueError, match=r"checkpoint\.pt.*plain state dict"):
        load_encoder_weights(pretrained_unet(width=WIDTH), path)


# ---- classifier and loss


def test_classifier_concatenates_and_splits_head_logits():
    classifier = encoder_classifier(width=2, head_sizes=(5, 3))
    logits = classifier(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 8)
    grade, risk = classifier.split_logits(logits)
    assert grade.shape == (2, 5) and risk.shape == (2, 3)
    assert torch.equal(torch.cat([grade, risk], dim=1), logits)


def test_frozen_encoder_keeps_batchnorm_statistics_and_trains_only_heads():
    classifier = EncoderClassifier(UNetEncoder(2, 3, width=2), head_sizes=4, freeze_encoder=True)
    classifier.train()
    statistics_before = {key: value.clone() for key, value in classifier.encoder.state_dict().items()}

    logits = classifier(torch.randn(3, 3, 32, 32) * 5 + 2)
    F.cross_entropy(logits, torch.tensor([0, 1, 3])).backward()

    assert classifier.training and classifier.heads.training and not classifier.encoder.training
    for key, value in classifier.encoder.state_dict().items():
        assert torch.equal(value, statistics_before[key]), key
    assert not any(parameter.requires_grad for parameter in classifier.encoder.parameters())
    assert all(parameter.grad is not None for parameter in classifier.heads.parameters())


def test_linear_evaluation_standardises_the_frozen_features_and_stays_linear():
    torch.manual_seed(0)
    classifier = EncoderClassifier(UNetEncoder(2, 3, width=2), head_sizes=2, freeze_encoder=True)
    images = torch.randn(6, 3, 32, 32)
    features = global_average_pool(classifier.encoder(images)).detach()
    classifier.train()
    for _ in range(200):  # the running statistics converge to the batch's
        classifier(images)
    classifier.eval()
    head = classifier.heads[0]
    mean, var = features.mean(dim=0), features.var(dim=0, unbiased=True)
    standardised = (features - mean) / torch.sqrt(var + classifier.feature_norm.eps)
    # at evaluation: a fixed standardisation of each pooled channel, then the linear head
    assert torch.allclose(classifier(images), head(standardised), atol=1e-4)
    assert isinstance(EncoderClassifier(UNetEncoder(2, 3, width=2), head_sizes=2).feature_norm, torch.nn.Identity)


def test_fine_tuned_encoder_trains_with_the_heads():
    classifier = EncoderClassifier(UNetEncoder(2, 3, width=2), head_sizes=(2,))
    classifier.train()
    assert classifier.encoder.training
    assert all(parameter.requires_grad for parameter in classifier.parameters())


def test_multi_head_loss_is_the_sum_of_per_head_cross_entropies():
    logits = torch.randn(4, 8)
    target = torch.tensor([[0, 2], [4, 1], [2, 0], [1, 1]])
    expected = F.cross_entropy(logits[:, :5], target[:, 0]) + F.cross_entropy(logits[:, 5:], target[:, 1])
    loss = MultiHeadCrossEntropyLoss((5, 3))
    assert torch.allclose(loss(logits, target), expected)
    assert torch.allclose(loss(logits, target.float()), expected)
    with pytest.raises(ValueError):
        loss(logits[:, :7], target)
