"""``camcontrast probe``: frozen-feature probes of encoders on a bundle's labelled downstream images.

Each bundle names, in ``configs/common.json``, the images to probe and their labels:

- ``probe_datalist``: entries with an ``image`` and label keys (fundus: the IDRiD grading sheet;
  chest X-rays: the ChestX-ray14 test list; MRI: every session of the cohort);
- ``probe_tasks``: task name -> label key of those entries (an array-valued key is a multilabel task);
- ``probe_group_key``: the key that keeps a patient's images on one side of every split.

Features come from the bundle's own ``configs/inference.json`` (the one the model zoo's tools run):
the encoder's deepest feature map, average-pooled to one vector per image. Every encoder is probed on
the same resampled splits (:mod:`camcontrast_monai.metrics.probes`), so the report can pair them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.utils.io import atomic_torch_save, write_json

__all__ = [
    "PROBED_ENCODERS",
    "PROBE_BASELINES",
    "ProbeData",
    "embed_images",
    "merge_probe_summaries",
    "export_encoder",
    "probe_bundle_encoders",
    "probe_data",
    "probe_demo_encoders",
    "probe_verdict",
    "run_probe",
    "split_probe_score",
    "write_probe_section",
]

PROBE_SPLITS = 20
PROBE_TEST_FRACTION = 0.3


@dataclasses.dataclass(frozen=True)
class ProbeData:
    """The images a bundle probes, their tasks (:class:`~camcontrast_monai.metrics.probes.ProbeTask`) and patient groups."""

    images: list[str]
    tasks: list
    groups: list | None


def _bundle_parser(bundle: Path, config: str, overrides: Mapping[str, Any]):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / config))
    parser.update(dict(overrides))
    return parser


def probe_data(bundle: Path, overrides: Mapping[str, Any]) -> ProbeData:
    """Read ``probe_datalist``, ``probe_tasks`` and ``probe_group_key`` from the bundle's ``common.json``."""
    from camcontrast_monai.metrics.probes import ProbeTask

    parser = _bundle_parser(bundle, "common.json", overrides)
    datalist = parser.get_parsed_content("probe_datalist")
    if not datalist:
        raise ValueError(f"{bundle.name}: probe_datalist is empty (dataset_dir={overrides.get('dataset_dir')!r})")
    tasks = []
    for name, key in parser.get_parsed_content("probe_tasks").items():
        labels = np.stack([np.asarray(entry[key]) for entry in datalist])
        tasks.append(ProbeTask(name, labels))
    group_key = parser.get("probe_group_key")
    groups = [entry.get(group_key) for entry in datalist] if group_key else None
    if groups is not None and any(group is None for group in groups):
        groups = None  # a datalist without patient ids: every image is its own patient
    return ProbeData([str(entry["image"]) for entry in datalist], tasks, groups)


def export_encoder(
    bundle: Path, path: str | Path, weights: str | Path | None = None, seed: int = 0, overrides: Mapping[str, Any] | None = None
) -> Path:
    """Write the bundle's encoder as a plain state dict that ``inference.json`` loads strictly.

    ``weights`` None gives the random initialisation of ``seed``; otherwise any file
    :func:`~camcontrast_monai.networks.load_encoder_weights` reads (a stage-1 ``classifier.pt``, a stage-2
    checkpoint, a bare encoder) supplies the weights.
    """
    from camcontrast_monai.networks import load_encoder_weights

    torch.manual_seed(seed)
    encoder = _bundle_parser(bundle, "inference.json", overrides or {}).get_parsed_content("network_def")
    if weights is not None:
        load_encoder_weights(encoder, weights)
    return atomic_torch_save(encoder.state_dict(), path)


def embed_images(
    bundle: Path, encoder_path: str | Path, images: Sequence[str], output_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
) -> np.ndarray:  # fmt: skip
    """Pooled features ``(N, D)`` of ``images``, in their order, from the bundle's ``inference.json`` run in this process."""
    output_dir = Path(output_dir)
    own = {"encoder_path": str(encoder_path), "datalist": list(images), "output_dir": str(output_dir)}
    run_bundle(bundle, ["inference.json"], None, **{**(overrides or {}), **own})
    with np.load(output_dir / "embeddings.npz", allow_pickle=False) as saved:
        found = [str(Path(p).resolve()) for p in saved["images"]]
        if found != [str(Path(p).resolve()) for p in images]:
            raise RuntimeError(f"{output_dir / 'embeddings.npz'} lists other images than were asked for")
        return np.asarray(saved["embeddings"])


def probe_bundle_encoders(
    bundle: Path, encoders: Mapping[str, str | Path], out_dir: Path, n_splits: int = PROBE_SPLITS, seed: int = 0,
    overrides: Mapping[str, Any] | None = None, encoder_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    n_jobs: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Embed the bundle's probe images with each encoder file and probe every task; returns what ``probes.json`` holds.

    ``encoder_overrides`` adds config values for single encoders (e.g. ``encoder_name`` of a ResNet baseline);
    ``n_jobs`` processes score the splits (see :func:`~camcontrast_monai.metrics.probes.probe_encoders`).
    """
    from camcontrast_monai.metrics.probes import probe_encoders
    from camcontrast_monai.report.probes import results_as_lists

    started = time.perf_counter()
    overrides = overrides or {}
    data = probe_data(bundle, overrides)
    features = {
        name: embed_images(
            bundle, path, data.images, out_dir / "embeddings" / name, {**overrides, **(encoder_overrides or {}).get(name, {})}
        )
        for name, path in encoders.items()
    }  # fmt: skip
    results = {
        task.name: probe_encoders(
            features, task, n_splits=n_splits, test_fraction=PROBE_TEST_FRACTION, seed=seed, groups=data.groups,
            n_jobs=n_jobs,
        )
        for task in data.tasks
    }  # fmt: skip
    summary = {
        "images": len(data.images), "feature_dims": {name: int(array.shape[1]) for name, array in features.items()}, "n_splits": n_splits,
        "test_fraction": PROBE_TEST_FRACTION, "seed": seed, "grouped_by_patient": data.groups is not None,
        "metrics": {task.name: task.metric for task in data.tasks}, "encoders": {k: str(v) for k, v in encoders.items()},
        "results": results_as_lists(results), "seconds": time.perf_counter() - started,
    }  # fmt: skip
    write_json(summary, out_dir / "probes.json")
    return summary


def split_probe_score(
    metric: Any, head_sizes: Sequence[int] | None, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
    seed: int = 0,
) -> float:  # fmt: skip
    """A linear probe fitted on one fine-tuning split and scored on its test part by the fine-tuning's own metric.

    ``train`` and ``test`` are ``(features (N, D), labels)``. With ``head_sizes`` the labels are ``(N, n_heads)``
    class indices: the probe predicts the label combination (for IDRiD grading: the (DR, DME) pair) as one
    class, and the prediction goes to ``metric`` (an Ignite metric handler such as ``test#metric``) as one-hot
    logits per head. Without, the labels are ``(N, K)`` 0/1 targets of a metric that scores each class (an
    AUC; one-hot classes for a multi-class task): one probe per class, whose probabilities are the scores. A
    fine-tuned classifier and the probe of its frozen encoder are so scored alike, on the same images.
    """
    from camcontrast_monai.engines import combination_logits
    from camcontrast_monai.metrics.probes import ProbeTask, linear_probe

    (train_x, train_y), (test_x, test_y) = train, test
    if head_sizes is None:
        targets = np.asarray(train_y, dtype=int)
        predictions = torch.as_tensor(linear_probe(ProbeTask("split", targets), train_x, targets, test_x, seed=seed)).float()
    else:
        combinations, classes = np.unique(np.asarray(train_y, dtype=int).reshape(len(train_y), -1), axis=0, return_inverse=True)
        predicted = combinations[linear_probe(ProbeTask("split", classes), train_x, classes, test_x, seed=seed)]
        predictions = combination_logits(predicted, head_sizes)
    return metric_value(metric, predictions, torch.as_tensor(np.asarray(test_y)).reshape(len(test_x), -1))


def metric_value(metric: Any, predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """``metric`` (an Ignite metric handler of a bundle config, e.g. ``test#metric``) over one batch of
    predictions and targets, from a fresh start."""
    metric_fn = metric.metric_fn
    metric_fn.reset()
    metric_fn(y_pred=predictions, y=targets)
    return float(metric_fn.aggregate())


PROBED_ENCODERS = ("camcontrast", "random", "stage 1")
PROBE_BASELINES = PROBED_ENCODERS[1:]  # what the demos compare CAMContrast with


def probe_demo_encoders(
    bundle: Path, out_dir: Path, overrides: Mapping[str, Any], seed: int, n_jobs: int = 1
) -> dict[str, Any]:
    """Probe a demo's three encoders on the same splits: its CAMContrast encoder (``overrides["encoder_path"]``),
    a random one (``seed``) and its stage-1 classifier's (``out_dir/runs/stage1/classifier.pt``), the splits
    scored by ``n_jobs`` processes; writes ``out_dir/runs/probes/probes.json``."""
    probe_dir = out_dir / "runs" / "probes"
    classifier = out_dir / "runs" / "stage1" / "classifier.pt"
    encoders = {
        "camcontrast": overrides["encoder_path"],
        "random": export_encoder(bundle, probe_dir / "encoders" / "random.pt", None, seed, overrides),
        "stage 1": export_encoder(bundle, probe_dir / "encoders" / "stage1.pt", classifier, overrides=overrides),
    }
    return probe_bundle_encoders(bundle, encoders, probe_dir, seed=seed, overrides=overrides, n_jobs=n_jobs)


def write_probe_section(summary: Mapping[str, Any], report_dir: Path, method: str, baselines: Sequence[str]) -> list[str]:
    """The report's frozen-probe section (markdown lines, opening with :func:`probe_verdict` in bold) and its
    picture ``probes.png``."""
    from camcontrast_monai.report.probes import paired_rows, probe_summary_rows, save_probe_figure
    from camcontrast_monai.report.tables import markdown_table

    results, metrics = summary["results"], summary["metrics"]
    save_probe_figure(
        results, report_dir / "probes.png", f"frozen-feature probes over {summary['n_splits']} resampled splits", metrics
    )  # fmt: skip
    grouping = " (grouped by patient)" if summary["grouped_by_patient"] else ""
    dims = sorted(set(summary["feature_dims"].values()))
    dim_text = f"{dims[0]}-d" if len(dims) == 1 else "-d, ".join(map(str, dims)) + "-d"
    test = summary["test_fraction"]
    # with one encoder there is nothing to compare it with: no verdict, no paired table
    verdict = [f"**{probe_verdict(summary, method, baselines)}**", ""] if baselines else []
    paired = [
        "Paired differences over the same splits (95 % percentile bootstrap interval of the mean). The splits "
        "overlap, so the interval says how stable the difference is on these images, not on new data.",
        "",
        markdown_table(paired_rows(results, method, baselines)),
    ] if baselines else []  # fmt: skip
    return [
        *verdict,
        "## Frozen-feature probes",
        "",
        f"Each encoder is frozen and turns each of {summary['images']} labelled images into one pooled "
        f"{dim_text} feature vector. A linear probe (L2 logistic regression, its strength chosen by "
        f"3-fold cross-validation inside the training part) and a cosine kNN are fitted on {1 - test:.0%} of the images "
        f"and scored on the other {test:.0%}, over {summary['n_splits']} resampled splits{grouping}; every encoder sees the "
        "same splits. `trivial` is the training part's majority class (multilabel: each label's rate). "
        "Table: mean ± std over splits.",
        "",
        markdown_table(probe_summary_rows(results, metrics)),
        *paired,
        "![frozen-feature probes](probes.png)",
        "",
    ]


def run_probe(
    bundle: str = "fundus", encoders: Any = "", dataset_dir: str = "", out: str = "probe_output",
    n_splits: int = PROBE_SPLITS, seed: int = 0, method: str = "", **overrides: Any,
) -> Path:  # fmt: skip
    """Probe encoder files on a bundle's downstream images and write ``<out>/report/README.md``.

    ``encoders`` is ``name=path,...``; the name ``random`` without a path is the bundle's random
    initialisation (``seed``). ``method`` (default: the first encoder) is compared with every other.
    Extra ``--key value`` pairs override the bundle configs (e.g. ``--width 16 --image_size 128``).
    """
    pairs = [part.strip() for part in (encoders.split(",") if isinstance(encoders, str) else encoders) if part.strip()]
    if not pairs or not dataset_dir:
        raise ValueError("give --dataset_dir and --encoders name=path,... (the name 'random' needs no path)")
    root = bundle_path(bundle)
    out_dir = Path(out).resolve()
    overrides = {"bundle_root": str(root), "dataset_dir": str(Path(dataset_dir).resolve()), **overrides}
    files: dict[str, Path] = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        if not path and name != "random":
            raise ValueError(f"encoder {name!r} needs a path: {name}=path/to/model.pt")
        files[name] = export_encoder(root, out_dir / "encoders" / f"{name}.pt", path or None, seed, overrides)
    summary = probe_bundle_encoders(root, files, out_dir, n_splits, seed, overrides)
    names = list(files)
    method = method or names[0]
    report = out_dir / "report"
    lines = ["# Frozen-feature probes", "", f"Bundle {root.name}, data {overrides['dataset_dir']}.", ""]
    lines += write_probe_section(summary, report, method, [n for n in names if n != method])
    (report / "README.md").write_text("\n".join(lines))
    print(f"report written to {report / 'README.md'}  ({summary['seconds']:.0f} s)", flush=True)
    return report


def probe_verdict(summary: Mapping[str, Any], method: str, baselines: Sequence[str], probe: str = "linear") -> str:
    """One sentence: on how many tasks ``method``'s ``probe`` score is above or below each baseline's (paired
    95 % interval clear of zero)."""
    from camcontrast_monai.metrics.paired import paired_difference

    results = summary["results"]
    parts = []
    for baseline in baselines:
        above, below = [], []
        for task, by_probe in results.items():
            difference = paired_difference(np.asarray(by_probe[probe][method]), np.asarray(by_probe[probe][baseline]))
            if difference.low > 0:
                above.append(f"{task} {difference.mean:+.2f}")
            elif difference.high < 0:
                below.append(f"{task} {difference.mean:+.2f}")
        text = f"above {baseline} on {len(above)} of {len(results)} tasks" + (f" ({', '.join(above)})" if above else "")
        if below:
            text += f" and below it on {len(below)} ({', '.join(below)})"
        parts.append(text)
    return f"With a {probe} probe of frozen features, {method} is " + "; ".join(parts) + " (paired 95 % intervals clear of zero)."


def merge_probe_summaries(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One summary from several seeds' probes: per-split scores concatenated in seed order, for the encoders
    every seed has, so pair ``i`` still shares one seed and one split. None when there is nothing to merge."""
    if not summaries:
        return None
    first = summaries[0]
    names = [name for name in first["encoders"] if all(name in s["encoders"] for s in summaries)]
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for task, by_probe in first["results"].items():
        results[task] = {}
        for probe, by_name in by_probe.items():
            keep = by_name if probe == "trivial" else {name: None for name in names}
            results[task][probe] = {name: [v for s in summaries for v in s["results"][task][probe][name]] for name in keep}
    return {
        **first, "results": results, "encoders": {name: first["encoders"][name] for name in names},
        "n_splits": sum(s["n_splits"] for s in summaries), "seeds": [s["seed"] for s in summaries],
        "seconds": sum(s["seconds"] for s in summaries),
    }  # fmt: skip
