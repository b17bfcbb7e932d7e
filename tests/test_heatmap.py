import torch

from camcontrast_monai.networks import CAMClassifier, cam_heatmaps
from camcontrast_monai.transforms import CAMHeatmap, CAMHeatmapd


def identity_classifier():
    """A classifier whose 'features' are the input channels and whose class c reads channel c."""
    model = CAMClassifier(encoder=torch.nn.Identity(), feature_channels=2)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.eye(2))
        model.classifier.bias.zero_()
    return model


def test_heatmap_is_minmax_of_the_abnormal_cam():
    image = torch.stack([torch.zeros(2, 3), torch.tensor([[2.0, 4.0, 6.0], [2.0, 2.0, 10.0]])])
    heatmap = CAMHeatmap(identity_classifier())(image)
    assert heatmap.shape == (1, 2, 3)
    assert torch.allclose(heatmap[0], torch.tensor([[0.0, 0.25, 0.5], [0.0, 0.0, 1.0]]))


def test_constant_cam_gives_zeros_not_nan():
    heatmap = CAMHeatmap(identity_classifier())(torch.full((2, 4, 4), 3.0))
    assert torch.equal(heatmap, torch.zeros(1, 4, 4))


def test_dictionary_twin_keeps_image_and_restores_training_mode():
    model = identity_classifier().train()
    image = torch.rand(2, 4, 4)
    out = CAMHeatmapd(keys="image", classifier=model)({"image": image, "label": 1})
    assert torch.equal(out["image"], image) and out["label"] == 1
    assert out["heatmap"].shape == (1, 4, 4) and out["heatmap"].max() == 1.0
    assert model.training


def test_batched_heatmaps_from_a_unet_classifier_match_per_image():
    torch.manual_seed(0)
    model = CAMClassifier(spatial_dims=2, in_channels=3, width=2)
    images = torch.rand(3, 3, 32, 32)
    batched = cam_heatmaps(model, images)
    single = torch.stack([CAMHeatmap(model)(image) for image in images])
    assert batched.shape == (3, 1, 2, 2)
    assert torch.allclose(batched, single, atol=1e-5)
