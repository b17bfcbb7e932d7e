"""Precision and memory-format switches of stage 2: the loss stays float32 under autocast; channels_last trains alike."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events

from camcontrast_monai.engines import Stage2Trainer
from camcontrast_monai.losses import ImageHeatmapNTXentLoss, nt_xent
from camcontrast_monai.networks import CAMContrastNet


def test_ntxent_is_float32_under_bf16_autocast():
    generator = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(16, 32, generator=generator), torch.randn(16, 32, generator=generator)
    expected = nt_xent(z_a, z_b, 0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = nt_xent(z_a, z_b, 0.05)
    assert under_autocast.dtype == torch.float32
    # a bf16 similarity matmul would be off by ~1e-2 at tau 0.05; float32 agrees to rounding
    assert torch.allclose(under_autocast, expected, rtol=1e-6, atol=1e-6)


def _train(channels_last: bool, autocast_dtype: str | None = None) -> tuple[list[float], CAMContrastNet]:
    torch.manual_seed(0)
    network = CAMContrastNet(width=2, heatmap_channels=(4, 4, 4), projection_dim=8)
    generator = torch.Generator().manual_seed(1)
    batch = {
        "image": torch.rand(8, 3, 32, 32, generator=generator),
        "heatmap": torch.rand(8, 1, 2, 2, generator=generator),
    }
    trainer = Stage2Trainer(
        device="cpu", max_epochs=3, train_data_loader=[batch], network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9),
        loss_function=ImageHeatmapNTXentLoss(0.5), channels_last=channels_last, autocast_dtype=autocast_dtype,
    )  # fmt: skip
    losses: list[float] = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda engine: losses.append(engine.state.output[0]["loss"])
    )
    trainer.run()
    return losses, network


@pytest.mark.parametrize("autocast_dtype", [None, "bfloat16"])
def test_channels_last_switch_converts_the_network_and_trains_alike(autocast_dtype):
    if autocast_dtype and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("CPU without bf16")
    reference, plain = _train(channels_last=False, autocast_dtype=autocast_dtype)
    losses, converted = _train(channels_last=True, autocast_dtype=autocast_dtype)
    first_conv = converted.image_encoder.conv_0.conv_0.conv.weight
    assert first_conv.is_contiguous(memory_format=torch.channels_last) and not first_conv.is_contiguous()
    assert plain.image_encoder.conv_0.conv_0.conv.weight.is_contiguous()
    assert len(losses) == 3
    # only the summation order differs: same losses to rounding (bf16 rounding is coarser)
    tolerance = 1e-4 if autocast_dtype is None else 5e-2
    assert losses == pytest.approx(reference, rel=tolerance)
    assert losses[-1] < losses[0]
