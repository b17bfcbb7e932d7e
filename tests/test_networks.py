import pytest
import torch
from monai.networks.nets import BasicUNet, DenseNet121, ResNet

from camcontrast_monai.networks import (
    ENCODER_NAMES,
    CAMClassifier,
    CAMContrastNet,
    DenseNetEncoder,
    HeatmapEncoder,
    ProjectionHead,
    ResNetEncoder,
    UNetEncoder,
    build_encoder,
    class_activation_maps,
    minmax_normalize,
    unet_features,
)


def test_paper_width_encoder_is_64_to_1024_channels():
    assert unet_features(64) == (64, 128, 256, 512, 1024)
    encoder = UNetEncoder(spatial_dims=2, in_channels=3)
    assert encoder.out_channels == 1024
    assert encoder.down_4.convs.conv_1.conv.out_channels == 1024


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 3, 64, 48)), (3, (1, 1, 32, 16, 32))])
def test_encoder_downsamples_by_16(spatial_dims, shape):
    encoder = UNetEncoder(spatial_dims, in_channels=shape[1], width=2)
    levels = encoder.forward_levels(torch.randn(shape))
    assert [level.shape[1] for level in levels] == [2, 4, 8, 16, 32]
    assert levels[-1].shape[2:] == tuple(s // 16 for s in shape[2:])


def test_encoder_weights_load_into_monai_basic_unet_key_for_key():
    encoder = UNetEncoder(spatial_dims=2, in_channels=3, width=4)
    unet = BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=(4, 8, 16, 32, 64, 4), act="relu", norm="batch")
    result = unet.load_state_dict(encoder.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert all(key.startswith(("upcat_", "final_conv")) for key in result.missing_keys)
    for key, value in encoder.state_dict().items():
        assert torch.equal(unet.state_dict()[key], value)


def test_cam_is_the_class_weighted_sum_of_feature_maps():
    torch.manual_seed(0)
    features, weights = torch.randn(2, 5, 3, 4), torch.randn(3, 5)
    cams = class_activation_maps(features, weights)
    for b in range(2):
        for c in range(3):
            expected = sum(weights[c, i] * features[b, i] for i in range(5))
            assert torch.allclose(cams[b, c], expected, atol=1e-6)


def test_classifier_logits_are_gap_of_cams_plus_bias():
    torch.manual_seed(1)
    model = CAMClassifier(spatial_dims=2, in_channels=3, width=2).eval()
    x = torch.randn(3, 3, 32, 32)
    logits, cams = model.forward_with_cams(x)
    assert cams.shape == (3, 2, 2, 2)
    assert torch.allclose(logits, model(x), atol=1e-6)
    assert torch.allclose(cams, model.cams(x), atol=1e-6)
    assert torch.allclose(logits, cams.mean(dim=(2, 3)) + model.classifier.bias, atol=1e-5)


def test_classifier_accepts_a_custom_encoder():
    model = CAMClassifier(encoder=torch.nn.Identity(), feature_channels=4)
    assert model(torch.randn(2, 4, 3, 3)).shape == (2, 2)
    with pytest.raises(ValueError, match="feature_channels"):
        CAMClassifier(encoder=torch.nn.Identity())


def test_minmax_normalize_each_sample_and_channel_on_its_own():
    maps = torch.tensor([[[[0.0, 10.0]], [[4.0, 4.0]]], [[[-1.0, 1.0]], [[2.0, 6.0]]]])
    expected = torch.tensor([[[[0.0, 1.0]], [[0.0, 0.0]]], [[[0.0, 1.0]], [[0.0, 1.0]]]])
    assert torch.equal(minmax_normalize(maps), expected)


def test_heatmap_encoder_has_no_bias_and_maps_all_empty_heatmaps_to_one_vector():
    encoder = HeatmapEncoder(spatial_dims=2)
    assert all(not name.endswith("bias") for name, _ in encoder.named_parameters())
    assert len([m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]) == 3
    out = encoder(torch.zeros(4, 1, 7, 7))
    assert torch.equal(out, torch.zeros(4, 256))
    assert HeatmapEncoder(spatial_dims=3, channels=(2, 3, 5))(torch.rand(2, 1, 3, 3, 3)).shape == (2, 5)


@pytest.mark.parametrize("spatial_dims,image,heatmap", [(2, (2, 3, 32, 32), (2, 1, 2, 2)), (3, (2, 1, 16, 16, 16), (2, 1, 1, 1, 1))])
def test_contrastive_net_projects_both_views_to_128_d(spatial_dims, image, heatmap):
    net = CAMContrastNet(spatial_dims=spatial_dims, in_channels=image[1], width=2, heatmap_channels=(4, 4, 4))
    z_image, z_heatmap = net(torch.randn(image), torch.rand(heatmap))
    assert z_image.shape == z_heatmap.shape == (2, 128)
    assert net.embed_image(torch.randn(image)).shape == (2, 32)


def test_batch_norm_projector_keeps_nearly_identical_features_apart():
    # pooled features at initialisation barely vary across crops: a plain MLP maps them to one direction
    torch.manual_seed(0)
    features = 1.0 + 0.01 * torch.randn(32, 64)

    def mean_pairwise_cosine(z):
        z = torch.nn.functional.normalize(z, dim=1)
        return ((z @ z.T).sum() - len(z)) / (len(z) * (len(z) - 1))

    plain = ProjectionHead(64, batch_norm=False).train()
    normalised = ProjectionHead(64, batch_norm=True).train()
    assert mean_pairwise_cosine(plain(features)) > 0.99
    assert mean_pairwise_cosine(normalised(features)) < 0.5
    assert isinstance(normalised.mlp[1], torch.nn.BatchNorm1d) and normalised.mlp[0].bias is None


@pytest.mark.parametrize("name", ENCODER_NAMES)
@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 3, 64, 64)), (3, (2, 1, 32, 64, 32))])
def test_every_backbone_gives_a_feature_map_with_its_declared_channels(name, spatial_dims, shape):
    encoder = build_encoder(name, spatial_dims, shape[1], width=8)
    features = encoder(torch.randn(shape))
    assert features.ndim == spatial_dims + 2 and features.shape[1] == encoder.out_channels
    classifier = CAMClassifier(spatial_dims, shape[1], encoder=build_encoder(name, spatial_dims, shape[1], width=8))
    assert classifier.cams(torch.randn(shape)).shape[2:] == features.shape[2:]


def test_resnet_encoder_downsamples_by_32_and_loads_into_monai_resnet():
    encoder = ResNetEncoder(spatial_dims=2, in_channels=3, depth=34)
    assert encoder(torch.randn(1, 3, 224, 224)).shape == (1, 512, 7, 7)
    monai_resnet = ResNet("basic", [3, 4, 6, 3], [64, 128, 256, 512], spatial_dims=2, conv1_t_stride=2, feed_forward=False)
    monai_resnet.load_state_dict(encoder.state_dict())  # strict: every key matches


def test_densenet_encoder_has_densenet121_feature_keys():
    encoder = DenseNetEncoder(spatial_dims=2, in_channels=3)
    assert encoder.out_channels == 1024
    missing, unexpected = DenseNet121(spatial_dims=2, in_channels=3, out_channels=2).load_state_dict(
        encoder.state_dict(), strict=False
    )
    assert unexpected == [] and missing == ["class_layers.out.weight", "class_layers.out.bias"]


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown encoder 'vgg16'"):
        build_encoder("vgg16")


# --- other backbones through the fundus bundle (paper Table 12): stage 1, heatmaps, stage 2, downstream ---


@pytest.mark.parametrize("encoder_name,encoder_type", [("resnet34", ResNetEncoder), ("densenet121", DenseNetEncoder)])
def test_backbone_switch_reaches_stage1_heatmaps_stage2_and_finetuning(tmp_path, encoder_name, encoder_type):
    import json

    import numpy as np
    from monai.bundle import ConfigParser

    from camcontrast_monai.apps.bundle import bundle_path, run_bundle
    from camcontrast_monai.synthetic import write_fundus_dataset

    bundle = bundle_path()
    write_fundus_dataset(tmp_path / "data" / "pretrain", n=4, seed=0, image_size=64)
    common = {
        "bundle_root": str(bundle), "dataset_dir": str(tmp_path / "data"), "output_dir": str(tmp_path / "runs"),
        "width": 4, "image_size": 64, "num_workers": 0, "encoder_name": encoder_name,
    }  # fmt: skip

    def parsed(configs, key, **overrides):
        parser = ConfigParser()
        parser.read_config([str(bundle / "configs" / name) for name in configs])
        for name, value in {**common, **overrides}.items():
            parser[name] = value
        return parser.get_parsed_content(key)

    classifier = parsed(["common.json", "stage1.json"], "network_def")
    assert isinstance(classifier.encoder, encoder_type)
    logits, cams = classifier.forward_with_cams(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 2) and cams.shape == (2, 2, 2, 2)  # CAMs of the last block: 64 px / 32
    (tmp_path / "runs" / "stage1").mkdir(parents=True)
    torch.save(classifier.state_dict(), tmp_path / "runs" / "stage1" / "classifier.pt")
    run_bundle(bundle, ["common.json", "heatmaps.json"], **common)
    entry = json.loads((tmp_path / "runs" / "heatmaps" / "heatmap_datalist.json").read_text())[0]
    assert np.load(entry["heatmap"]).shape == (2, 2)

    stage2 = parsed(["common.json", "pretrain.json"], "network_def")
    assert isinstance(stage2.image_encoder, encoder_type)
    z_image, z_heatmap = stage2(torch.rand(2, 3, 32, 32), torch.rand(2, 1, 1, 1))
    assert z_image.shape == z_heatmap.shape == (2, 128)
    encoder_path = tmp_path / "encoder.pt"
    torch.save(stage2.image_encoder.state_dict(), encoder_path)
    downstream = parsed(["common.json", "finetune_cls.json"], "network_def", init_weights=str(encoder_path))
    for key, value in stage2.image_encoder.state_dict().items():
        assert torch.equal(downstream.encoder.state_dict()[key], value)
    assert isinstance(downstream.encoder, encoder_type) and downstream(torch.rand(2, 3, 64, 64)).shape == (2, 8)
    with pytest.raises(RuntimeError) as raised:
        parsed(["common.json", "finetune_seg.json"], "network_def")
    assert "needs the U-Net encoder" in str(raised.value.__cause__)
