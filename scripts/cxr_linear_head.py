"""Offline check of the chest X-ray linear-evaluation head against a logistic-regression probe (docs/results, Table 12).

On the `bench compare --bundle cxr` preset's data (400 ChestX-ray14-like images, 96 px, width 16), each seed draws the
bundle's split, embeds the clean train/val/test images and ``--augmented_epochs`` augmented copies of the training
images (the bundle's own training transforms) with a frozen encoder, and then trains the bundle's head
(BatchNorm without affine parameters + linear, SGD momentum 0.9, batch 40, cosine schedule, BCE) on the fixed
features for every (lr, epochs, weight decay) of the grid. It keeps the best validation epoch and reports its
test mean AUC, beside ``metrics.probes.linear_probe`` fitted on the clean training features.

    python scripts/cxr_linear_head.py --out /tmp/cxr_head                        # random encoders, 3 seeds
    python scripts/cxr_linear_head.py --lrs 0.3,1,3,10 --epochs 30,60,120 --weight_decays 0.01,0.03,0.1
    python scripts/cxr_linear_head.py --weights path/to/encoder.pt                # a pretrained encoder instead

Prints one line per head and a table sorted by mean test AUC; writes results.json to ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from camcontrast_monai.apps.bundle import bundle_path
from camcontrast_monai.metrics.probes import ProbeTask, linear_probe, mean_auc
from camcontrast_monai.networks import load_encoder_weights
from camcontrast_monai.networks.downstream import global_average_pool
from camcontrast_monai.synthetic.cxr import write_chestxray14_dataset

BATCH = 40


def _parser(bundle: Path, configs: list[str], overrides: dict) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / name) for name in configs])
    parser.update(overrides)
    return parser


@torch.no_grad()
def _features(encoder: torch.nn.Module, samples: list[dict]) -> np.ndarray:
    chunks = []
    for start in range(0, len(samples), 64):
        images = torch.stack([torch.as_tensor(s["image"]).float() for s in samples[start : start + 64]])
        chunks.append(global_average_pool(encoder(images)).numpy())
    return np.concatenate(chunks).astype(np.float64)


def train_head(
    train_views: list[np.ndarray], train_y: np.ndarray, val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray], lr: float, epochs: int, weight_decay: float, seed: int,
) -> tuple[float, float]:  # fmt: skip
    """The bundle's linear head on fixed features (epoch e trains on ``train_views[e % len]``); returns the best
    validation mean AUC and the test mean AUC of that epoch."""
    torch.manual_seed(seed)
    head = torch.nn.Sequential(torch.nn.BatchNorm1d(train_views[0].shape[1], affine=False),
                               torch.nn.Linear(train_views[0].shape[1], train_y.shape[1]))  # fmt: skip
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    loss_fn, targets = torch.nn.BCEWithLogitsLoss(), torch.as_tensor(train_y).float()
    generator = torch.Generator().manual_seed(seed)
    best_val, best_test = -1.0, float("nan")
    for epoch in range(epochs):
        features = torch.as_tensor(train_views[epoch % len(train_views)]).float()
        head.train()
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, len(order) - BATCH + 1, BATCH):  # drop_last, as the bundle's loader
            batch = order[start : start + BATCH]
            optimizer.zero_grad()
            loss_fn(head(features[batch]), targets[batch]).backward()
            optimizer.step()
        schedule.step()
        head.eval()
        with torch.no_grad():
            val_auc = mean_auc(val[1], torch.sigmoid(head(torch.as_tensor(val[0]).float())).numpy())
            if val_auc > best_val:
                best_val = val_auc
                best_test = mean_auc(test[1], torch.sigmoid(head(torch.as_tensor(test[0]).float())).numpy())
    return best_val, best_test


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--out", default="/tmp/cxr_head")
    arguments.add_argument("--weights", default=None, help="encoder weights (default: the random init of each seed)")
    arguments.add_argument("--seeds", default="0,1,2")
    arguments.add_argument("--lrs", default="0.01,0.1,1")
    arguments.add_argument("--epochs", default="15,60")
    arguments.add_argument("--weight_decays", default="0,0.01")
    arguments.add_argument("--augmented_epochs", type=int, default=15, help="augmented copies of the training set")
    args = arguments.parse_args()
    floats = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
    out, bundle = Path(args.out), bundle_path("camcontrast_cxr")
    data = out / "data"
    if not (data / "chestxray14" / "test_list.txt").exists():
        write_chestxray14_dataset(data / "chestxray14", n=400, seed=0, image_size=256, progress=False)
    base = {"bundle_root": str(bundle), "dataset_dir": str(data), "width": 16, "image_size": 96, "crop_size": 96,
            "num_workers": 0, "output_dir": str(out / "runs")}  # fmt: skip
    results = []
    for seed in map(int, args.seeds.split(",")):
        parser = _parser(bundle, ["common.json", "finetune_cls.json"], {**base, "seed": seed})
        splits = parser.get_parsed_content("splits")
        clean_transform = Compose(parser.get_parsed_content("eval_transforms"))  # a list of transforms in the config
        train_transform = parser.get_parsed_content("train#preprocessing")
        train_transform.set_random_state(seed)
        torch.manual_seed(seed)
        encoder = _parser(bundle, ["inference.json"], base).get_parsed_content("network_def").eval()
        if args.weights:
            load_encoder_weights(encoder, args.weights)
        clean = {part: _features(encoder, [clean_transform(dict(d)) for d in splits[part]]) for part in splits}
        labels = {part: np.stack([np.asarray(d["label"]) for d in splits[part]]).astype(int) for part in splits}
        augmented = [_features(encoder, [train_transform(dict(d)) for d in splits["train"]]) for _ in range(args.augmented_epochs)]
        shift = np.mean(np.abs(augmented[0].mean(0) - clean["train"].mean(0)) / (clean["train"].std(0) + 1e-9))
        probe = mean_auc(labels["test"], linear_probe(ProbeTask("14 findings", labels["train"]), clean["train"], labels["train"], clean["test"], seed=seed))
        print(f"seed {seed}: {len(labels['train'])}/{len(labels['val'])}/{len(labels['test'])} images; augmented-clean "
              f"feature shift {shift:.2f} std per channel; logistic probe test {probe:.3f}", flush=True)  # fmt: skip
        results.append({"seed": seed, "variant": "logistic probe, clean features", "test": probe})
        grid = itertools.product(("clean", "augmented"), floats(args.lrs), map(int, args.epochs.split(",")), floats(args.weight_decays))
        for views, lr, epochs, weight_decay in grid:
            train_views = [clean["train"]] if views == "clean" else augmented
            val_auc, test_auc = train_head(
                train_views, labels["train"], (clean["val"], labels["val"]), (clean["test"], labels["test"]), lr, epochs,
                weight_decay, seed,
            )  # fmt: skip
            variant = f"head, {views} features, lr {lr:g}, {epochs} epochs, wd {weight_decay:g}"
            results.append({"seed": seed, "variant": variant, "val": val_auc, "test": test_auc})
            print(f"  {variant}: val {val_auc:.3f} test {test_auc:.3f}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    by_variant: dict[str, list[float]] = {}
    for row in results:
        by_variant.setdefault(row["variant"], []).append(row["test"])
    for variant, scores in sorted(by_variant.items(), key=lambda item: -np.mean(item[1])):
        print(f"{variant:<55} test {np.mean(scores):.3f} ± {np.std(scores):.3f}")


if __name__ == "__main__":
    main()
