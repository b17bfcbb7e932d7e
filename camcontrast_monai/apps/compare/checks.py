"""The comparison's checks beside fine-tuning: the trivial predictor, the probe check (a linear probe of each fine-tuned encoder's frozen start on the same split), and crop-level probes."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camcontrast_monai.apps.bundle import bundle_item
from camcontrast_monai.apps.compare.plan import ComparePlan, Grid, MethodSpec
from camcontrast_monai.apps.compare.runs import Runner, task_run
from camcontrast_monai.apps.compare.settings import CompareSetting
from camcontrast_monai.report.tables import write_json


def trivial_score(
    bundle: Path, setting: CompareSetting, task: str, seed: int, plan: Any, common: Mapping[str, Any]
) -> float:  # fmt: skip
    """The test score of the best predictor that sees no image, on seed ``seed``'s test split of ``task``.

    The candidates are constant: every label combination of the training split for a classification scored by
    accuracy or F1, all background and all foreground for segmentation; the one the task's metric scores best on
    the training split is scored on the test split (:func:`~camcontrast_monai.engines.trivial_test_score`). Under
    an AUC every constant ties every class's positives with its negatives, so the score is that of one constant.
    The split, transforms and metric are the fine-tuning config's own, so the number pairs with the fine-tuned
    test scores of the same seed.
    """
    from monai.data import Dataset
    from monai.transforms import Compose

    from camcontrast_monai.engines import label_combination_logits, trivial_test_score

    parser = _task_parser(bundle, setting, task, seed, 1.0, plan, common)
    splits = parser.get_parsed_content("splits")
    metric = parser.get_parsed_content("test#metric")
    if _scores_classes(metric):
        targets = _label_matrix([entry["label"] for entry in splits["test"]], parser)
        from camcontrast_monai.apps.probe import metric_value

        return metric_value(metric, torch.zeros(targets.shape), targets)
    train = splits["train"]
    if setting.tasks[task].classification:
        logits = label_combination_logits([entry["label"] for entry in train], parser.get_parsed_content("head_sizes"))
        candidates = [lambda label, constant=constant: constant[None] for constant in logits]
    else:
        train = Dataset(train, Compose(parser.get_parsed_content("eval_transforms")))
        candidates = [torch.zeros_like, torch.ones_like]
    return trivial_test_score(metric, train, parser.get_parsed_content("test#dataset"), candidates)


def _scores_classes(metric: Any) -> bool:
    """Whether a task's metric takes a score per class (an AUC) rather than one-hot predictions."""
    from camcontrast_monai.metrics import MultilabelAUC

    return isinstance(metric, MultilabelAUC)


def _label_matrix(labels: Sequence[Any], parser: Any) -> torch.Tensor:
    """``(N, K)`` 0/1 targets of a task scored per class: multilabel vectors as they are, class indices one-hot."""
    array = np.asarray(labels)
    if array.ndim == 1:
        array = np.eye(len(parser.get_parsed_content("class_names")), dtype=int)[array.astype(int)]
    return torch.as_tensor(array).float()


def _task_parser(
    bundle: Path, setting: CompareSetting, task: str, seed: int, fraction: float, plan: Any, common: Mapping[str, Any]
):  # fmt: skip
    """A ``ConfigParser`` of ``task``'s fine-tuning configs with the values a run of ``seed`` and ``fraction`` gets."""
    from monai.bundle import ConfigParser

    configs, task_overrides = task_run(setting, task, plan, seed, fraction)
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / name) for name in configs])
    parser.update({"bundle_root": str(bundle), **common, **task_overrides, "seed": seed, "label_fraction": fraction})
    return parser


def probe_check(
    runner: Runner, rows: Sequence[Mapping[str, Any]], grid: Grid, plan: Any, common: Mapping[str, Any],
    encoders: Mapping[tuple[str, int], str | None],
) -> list[dict[str, Any]]:  # fmt: skip
    """The standing check that fine-tuning uses what a pretrained encoder knows: for every classification task,
    pretrained method and fraction, the fine-tuned test score of each seed against a linear probe of the same
    frozen encoder fitted on the same (label-fraction) training split and scored on the same test split by
    the same metric. The check fails where the paired 95 % interval of fine-tuned minus probe lies below zero."""
    from camcontrast_monai.metrics import paired_difference

    out_dir, bundle, setting = runner.out_dir, runner.bundle, runner.setting
    lookup = {(r["method"], r["task"], r["fraction"]): r for r in rows}
    table = []
    for task in [t for t in grid.tasks if setting.tasks[t].classification]:
        for method in grid.methods:
            # the encoder each seed fine-tuned from: its own pretraining, or the first seed's when pretraining is shared
            pretrain_seeds = {seed: seed if (method.spec, seed) in encoders else grid.seeds[0] for seed in grid.seeds}
            files = {s: encoders.get((method.spec, s)) for s in set(pretrain_seeds.values())}
            work = {s: out_dir / "runs" / "probe_check" / task / method.slug / f"seed{s}" for s in files}
            if method.kind == "random" or not all(f and Path(f).is_file() for f in files.values()):
                continue
            if runner.report_only and not all((w / "embeddings.npz").is_file() for w in work.values()):
                continue
            features = {s: _task_features(work[s], bundle, setting, task, files[s], method, plan, common) for s in files}
            for fraction in grid.fractions:
                row = lookup.get((method.spec, task, fraction))
                if row is None:
                    continue
                probes = [
                    _split_probe(bundle, setting, task, seed, fraction, features[pretrain_seeds[seed]], plan, common)
                    for seed in grid.seeds
                ]  # fmt: skip
                difference = paired_difference(np.asarray(row["test_scores"], dtype=float), np.asarray(probes))
                table.append({
                    "task": task, "method": method.spec, "fraction": fraction, "fine-tuned": (row["mean"], row["std"]),
                    "linear probe, same split": (float(np.mean(probes)), float(np.std(probes, ddof=1)) if len(probes) > 1 else math.nan),
                    "fine-tuned - probe [95% interval]": str(difference),
                    "check": "FAILS" if difference.high < 0 else "holds",
                })  # fmt: skip
    return table


def _task_features(
    work: Path, bundle: Path, setting: CompareSetting, task: str, encoder: str, method: MethodSpec, plan: Any,
    common: Mapping[str, Any],
) -> dict[str, np.ndarray]:  # fmt: skip
    """Pooled frozen features of every image of ``task`` (image path -> vector), embedded once into ``work``."""
    from camcontrast_monai.apps.probe import embed_images

    if (work / "embeddings.npz").is_file():
        with np.load(work / "embeddings.npz", allow_pickle=False) as saved:
            return dict(zip(map(str, saved["images"]), np.asarray(saved["embeddings"]), strict=True))
    whole = _task_parser(bundle, setting, task, 0, 1.0, plan, common).get_parsed_content("splits")
    images = sorted({str(entry["image"]) for part in whole.values() for entry in part})
    settings = {**common, "bundle_root": str(bundle), **setting.probe_overrides(plan), **method.finetune_overrides}
    return dict(zip(images, embed_images(bundle, encoder, images, work, settings), strict=True))


def _split_probe(
    bundle: Path, setting: CompareSetting, task: str, seed: int, fraction: float, features: Mapping[str, np.ndarray],
    plan: Any, common: Mapping[str, Any],
) -> float:  # fmt: skip
    """:func:`~camcontrast_monai.apps.probe.split_probe_score` on the split that fine-tuning with ``seed`` and
    ``fraction`` used; a task scored per class (an AUC) is probed per class, on its ``(N, K)`` targets."""
    from camcontrast_monai.apps.probe import split_probe_score

    parser = _task_parser(bundle, setting, task, seed, fraction, plan, common)
    splits = parser.get_parsed_content("splits")
    metric = parser.get_parsed_content("test#metric")
    per_class = _scores_classes(metric)

    def part(name: str) -> tuple[np.ndarray, np.ndarray]:
        labels = [entry["label"] for entry in splits[name]]
        targets = _label_matrix(labels, parser).numpy() if per_class else np.stack([np.asarray(label) for label in labels])
        return np.stack([features[str(entry["image"])] for entry in splits[name]]), targets

    head_sizes = None if per_class else parser.get_parsed_content("head_sizes")
    return split_probe_score(metric, head_sizes, part("train"), part("test"), seed=seed)


def trivial_scores(runner: Runner, grid: Grid, plan: Any, common: Mapping[str, Any]) -> dict[str, list[float]]:
    """:func:`trivial_score` of every task and seed (in seed order), each computed once and kept in ``runs/trivial``."""
    scores: dict[str, list[float]] = {}
    for task in grid.tasks:
        for seed in grid.seeds:
            path = runner.out_dir / "runs" / "trivial" / task / f"seed{seed}.json"
            if not path.is_file():
                if runner.report_only:
                    scores.setdefault(task, []).append(math.nan)
                    continue
                write_json({"score": trivial_score(runner.bundle, runner.setting, task, seed, plan, common)}, path)
            scores.setdefault(task, []).append(float(json.loads(path.read_text())["score"]))
    return scores


def probe_methods(
    runner: Runner, methods: Sequence[MethodSpec], encoders: Mapping[tuple[str, int], str | None], plan: Any,
    common: Mapping[str, Any],
) -> dict[str, Any] | None:  # fmt: skip
    """Frozen probes of every pretrained encoder (random: a seeded initialisation) on the downstream images, one
    set of shared splits per pretraining seed, merged over seeds; methods whose encoder is missing are left out."""
    from camcontrast_monai.apps.probe import export_encoder, merge_probe_summaries, probe_bundle_encoders

    out_dir, bundle, report_only = runner.out_dir, runner.bundle, runner.report_only
    if "probe_datalist" not in json.loads((bundle / "configs" / "common.json").read_text()):
        print("frozen probes skipped: the config snapshot predates them", flush=True)
        return None
    overrides = {**common, "bundle_root": str(bundle), **runner.setting.probe_overrides(plan)}
    summaries = []
    for seed in sorted({seed for _, seed in encoders}):
        probe_dir = out_dir / "runs" / "probes" / f"seed{seed}"
        files: dict[str, Path] = {}
        for method in methods:
            settings = {**overrides, **method.finetune_overrides}
            if method.kind == "random":
                files[method.spec] = export_encoder(bundle, probe_dir / "encoders" / f"{method.slug}.pt", None, seed, settings)
            elif encoders.get((method.spec, seed)) and Path(encoders[method.spec, seed]).is_file():
                files[method.spec] = Path(encoders[method.spec, seed])
        done = probe_dir / "probes.json"
        earlier = json.loads(done.read_text()) if done.is_file() else None
        if earlier is not None and set(earlier["encoders"]) == set(files):
            summaries.append(earlier)
        elif not report_only and files:
            print(f"frozen probes of the seed-{seed} encoders", flush=True)
            summaries.append(probe_bundle_encoders(
                bundle, files, probe_dir, seed=seed, overrides=overrides,
                encoder_overrides={m.spec: m.finetune_overrides for m in methods},
            ))  # fmt: skip
    return merge_probe_summaries(summaries)


def _crop_embeddings(
    encoder_path: str | None, method: MethodSpec, plan: ComparePlan, datalist: Sequence[Mapping[str, Any]], seed: int
) -> dict[str, np.ndarray]:
    """The five fixed crops of each image: pooled encoder ``features``, crop ``positions``, the image's coarse
    ``labels``, ``lesions`` (whether the crop holds a lesion pixel of the image's ground-truth masks, at the
    pretraining resolution) and ``images`` (the image's index, to keep its crops on one side of a split)."""
    from camcontrast_monai.networks import global_average_pool, pretrained_encoder
    from camcontrast_monai.transforms import HEATMAP_STRIDE_2D, fixed_crop_names, paired_crop_boxes

    torch.manual_seed(seed)
    encoder = pretrained_encoder(
        method.overrides.get("encoder_name", "unet"), 2, 3, int(method.overrides.get("width", plan.width)), encoder_path
    ).eval()
    load = bundle_item("load_image", image_size=plan.image_size)
    # the boxes stage 2 cut its crops with: on the grid of the image's heatmap
    boxes = paired_crop_boxes({"image": (plan.image_size,) * 2, "heatmap": (plan.image_size // HEATMAP_STRIDE_2D,) * 2})["image"]
    features, lesions = [], []
    with torch.no_grad():
        for entry in datalist:
            image = torch.as_tensor(load({"image": entry["image"]})["image"]).float()
            features.append(global_average_pool(encoder(torch.stack([image[(slice(None), *box)] for box in boxes]))))
            mask = _lesion_mask(Path(entry["image"]), plan.image_size)
            lesions += [bool(mask[(slice(None), *box)].any()) for box in boxes]
    n, per_image = len(datalist), len(fixed_crop_names(2))
    return {
        "features": torch.cat(features).numpy(), "positions": np.tile(np.arange(per_image), n),
        "labels": np.repeat([int(entry["label"]) for entry in datalist], per_image),
        "lesions": np.asarray(lesions, dtype=int), "images": np.repeat(np.arange(n), per_image),
    }  # fmt: skip


def _lesion_mask(image: Path, size: int) -> torch.Tensor:
    """The union of a synthetic pretraining image's lesion masks, ``(1, size, size)``: a pixel is set where any
    lesion pixel falls inside it (area pooling), so lesions too small for ``size`` still count."""
    from PIL import Image

    from camcontrast_monai.synthetic.fundus import LESION_TYPES

    masks = [np.asarray(Image.open(image.parent.parent / "masks" / kind / f"{image.stem}.png")) > 0 for kind in LESION_TYPES]
    union = torch.as_tensor(np.logical_or.reduce(masks), dtype=torch.float32)[None, None]
    return torch.nn.functional.interpolate(union, size=(size, size), mode="area")[0] > 0


def crop_features(out_dir: Path, methods: Sequence[MethodSpec], plan: ComparePlan, seed: int, common: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """:func:`_crop_embeddings` of the first ``plan.map_images`` pretraining images for every method whose encoder exists."""
    from camcontrast_monai.data import read_odir_annotations

    pretrain_dir = Path(common["dataset_dir"]) / "pretrain"
    datalist = read_odir_annotations(str(pretrain_dir / "odir_annotations.csv"), str(pretrain_dir / "images"))
    datalist = datalist[: plan.map_images]
    crops = {}
    for method in methods:
        encoder = None
        if method.kind != "random":
            encoder = out_dir / "runs" / "pretrain" / method.slug / f"seed{seed}" / "encoder.pt"
            if not encoder.is_file():
                continue
        crops[method.spec] = _crop_embeddings(encoder and str(encoder), method, plan, datalist, seed)
    return crops


def embedding_maps(out_dir: Path, crops: Mapping[str, Mapping[str, np.ndarray]], seed: int) -> Path | None:
    from camcontrast_monai.report.embedding_map import save_embedding_maps, umap_embedding

    maps = {name: (umap_embedding(c["features"], seed=seed), c["positions"], c["labels"]) for name, c in crops.items()}
    if not maps:
        return None
    return save_embedding_maps(maps, out_dir / "report" / "embeddings.png", f"UMAP of fixed-crop features (seed {seed} encoders)")


def crop_probes(crops: Mapping[str, Mapping[str, np.ndarray]], seed: int = 0, n_splits: int = 20) -> list[dict[str, Any]]:
    """Linear and kNN probes of the fixed-crop features: which of the five positions a crop comes from, and whether
    it holds a lesion (ground-truth masks). Splits keep an image's crops together; every method sees the same."""
    from camcontrast_monai.metrics.probes import ProbeTask, probe_encoders
    from camcontrast_monai.report.probes import probe_summary_rows, results_as_lists

    if not crops:
        return []
    first = next(iter(crops.values()))
    features = {name: c["features"] for name, c in crops.items()}
    results = {
        name: probe_encoders(features, ProbeTask(name, first[key]), n_splits=n_splits, seed=seed, groups=first["images"])
        for name, key in (("crop position", "positions"), ("lesion in crop", "lesions"))
    }  # fmt: skip
    return probe_summary_rows(results_as_lists(results), {name: "accuracy" for name in results})
