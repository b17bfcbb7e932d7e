"""Does bf16 autocast in stage 2 hurt the learned representation? A small same-seed comparison on the CPU.

Synthetic fundus data -> stage 1 (float32) -> heatmaps -> stage 2 pretraining three times from the same
heatmaps, float32 and bfloat16 autocast, each with seeds 0 and 1 (same seed: same initial weights, crops
and augmentations; the seed-to-seed spread of float32 is the noise level) -> for each encoder:
a linear probe on frozen pooled features of the downstream images (5-fold cross-validated accuracy of
the DR grade, 5 classes, and of referable DR, grade > 0) and grading fine-tuning (test joint accuracy,
same fine-tuning seed). A random-init encoder is probed too, as the floor. Every stage is the fundus
bundle's own config, run in-process as ``python -m monai.bundle run`` would. Prints a JSON summary.

    python scripts/bf16_check.py --out /tmp/bf16_check      # about 10 min on 2 idle cores
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import fire
import numpy as np
import torch

from camcontrast_monai.apps.bundle import bundle_item, bundle_path, run_bundle
from camcontrast_monai.data import read_idrid_grading
from camcontrast_monai.networks import UNetEncoder
from camcontrast_monai.synthetic.fundus import write_fundus_dataset


def probe_features(state: dict | None, images: torch.Tensor, width: int) -> torch.Tensor:
    """Globally pooled features of the frozen encoder (random init when ``state`` is None)."""
    torch.manual_seed(0)
    encoder = UNetEncoder(2, 3, width)
    if state is not None:
        encoder.load_state_dict(state)
    with torch.no_grad():
        return encoder.eval()(images).mean(dim=(2, 3))


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, classes: int, weight_decay: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression with an L2 penalty, fitted by L-BFGS."""
    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def linear_probe(
    features: torch.Tensor, labels: torch.Tensor, folds: int = 5, weight_decay: float = 1e-3
) -> float:
    """k-fold cross-validated accuracy of a logistic regression on standardised frozen features."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    correct = 0
    for fold in range(folds):
        test = order[fold::folds]
        train = order[torch.isin(order, test, invert=True)]
        mean, std = features[train].mean(0), features[train].std(0) + 1e-6
        weight, bias = fit_logistic(
            (features[train] - mean) / std, labels[train], int(labels.max()) + 1, weight_decay
        )
        correct += int((((features[test] - mean) / std @ weight + bias).argmax(1) == labels[test]).sum())
    return correct / len(labels)


def main(
    out: str = "bf16_check",
    n_pretrain: int = 160,
    n_downstream: int = 120,
    image_size: int = 64,
    width: int = 8,
    pretrain_epochs: int = 12,
    finetune_epochs: int = 8,
) -> None:
    """Run the comparison and print its JSON summary (also written to ``<out>/summary.json``).

    Args:
        out: folder for the data, runs and summary.
        n_pretrain: synthetic pretraining images.
        n_downstream: synthetic downstream (IDRiD-style) images.
        image_size: side the images are trained at.
        width: U-Net encoder width.
        pretrain_epochs: stage-2 epochs of each run.
        finetune_epochs: grading fine-tuning epochs.
    """
    started = time.perf_counter()
    out_dir = Path(out).resolve()
    bundle = bundle_path()
    data_dir = out_dir / "data"
    write_fundus_dataset(data_dir / "pretrain", n=n_pretrain, seed=0, image_size=image_size * 2)
    write_fundus_dataset(
        data_dir / "downstream", n=n_downstream, seed=1000, image_size=image_size * 2
    )
    common = {"bundle_root": str(bundle), "dataset_dir": str(data_dir), "width": width, "num_workers": 0,
              "image_size": image_size}  # fmt: skip
    shared = out_dir / "shared"
    run_bundle(bundle, ["common.json", "stage1.json"], "train", **common, output_dir=str(shared), seed=0,
               stage1_epochs=3, stage1_batch_size=16)  # fmt: skip
    run_bundle(bundle, ["common.json", "heatmaps.json"], **common, output_dir=str(shared), seed=0)
    heatmap_datalist = str(shared / "heatmaps" / "heatmap_datalist.json")

    grading = read_idrid_grading(
        str(data_dir / "downstream" / "idrid_grading.csv"), str(data_dir / "downstream" / "images")
    )
    load = bundle_item("load_image", image_size=image_size)
    probe_images = torch.stack([torch.as_tensor(load({"image": d["image"]})["image"]) for d in grading]).float()
    grades = torch.tensor([int(d["dr_grade"]) for d in grading])

    def probe(state: dict | None) -> dict[str, float]:
        features = probe_features(state, probe_images, width)
        return {
            "dr_grade_5class": linear_probe(features, grades),
            "referable_dr": linear_probe(features, (grades > 0).long()),
        }

    results: dict = {
        "random_init_probe": probe(None),
        "majority_dr_grade": float(np.bincount(grades).max() / len(grades)),
    }
    runs = (
        ("fp32_seed0", None, 0),
        ("bf16_seed0", "bfloat16", 0),
        ("fp32_seed1", None, 1),
        ("bf16_seed1", "bfloat16", 1),
    )
    for name, dtype, seed in runs:
        run_dir = out_dir / name
        encoder = run_dir / "model.pt"
        run_bundle(
            bundle, ["common.json", "pretrain.json"], "train", **common, output_dir=str(run_dir), seed=seed,
            heatmap_datalist=heatmap_datalist, encoder_path=str(encoder), autocast_dtype=dtype,
            pretrain_epochs=pretrain_epochs, pretrain_batch_size=40, pretrain_lr=0.003,
        )  # fmt: skip
        run_bundle(
            bundle, ["common.json", "finetune_cls.json"], "train", **common, output_dir=str(run_dir), seed=0,
            init="camcontrast", encoder_path=str(encoder), finetune_epochs=finetune_epochs,
            crop_size=image_size - image_size // 8, finetune_batch_size=16,
        )  # fmt: skip
        losses = [v for _, v in json.loads((run_dir / "pretrain" / "loss_history.json").read_text())["loss"]]
        metrics_file = next((run_dir / "finetune").rglob("test_metrics.json"))
        metrics = json.loads(metrics_file.read_text())
        state = torch.load(encoder, weights_only=True)
        results[name] = {
            "pretrain_loss_first_last": [losses[0], losses[-1]],
            "pretrain_loss_mean_last_10": sum(losses[-10:]) / len(losses[-10:]),
            "linear_probe": probe(state),
            "finetune_test": metrics["metrics"],
        }
    encoders = {name: torch.load(out_dir / name / "model.pt", weights_only=True) for name, _, _ in runs}
    for name in ("bf16_seed0", "fp32_seed1", "bf16_seed1"):
        diffs = [(encoders[name][k].float() - encoders["fp32_seed0"][k].float()).norm() / encoders["fp32_seed0"][k].float().norm()
                 for k in encoders[name] if encoders[name][k].is_floating_point() and encoders[name][k].ndim > 1]  # fmt: skip
        results[name]["weight_rel_diff_vs_fp32_seed0_median"] = float(torch.stack(diffs).median())
    results["seconds"] = time.perf_counter() - started
    results["threads"] = torch.get_num_threads()
    print(json.dumps(results, indent=1))
    (out_dir / "summary.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    fire.Fire(main)
