"""``camcontrast bench pipeline`` and ``camcontrast bench heatmaps``: end-to-end stage-2 and heatmap throughput.

``bench_pipeline`` runs, alternately over several rounds in one process and with the same network,
batch, crop size and loss, three ways of feeding stage-2 training steps:

* ``ours``: the fundus bundle's pipeline (``pretrain.json``): :class:`FixedCropDataset` caches every
  decoded, resized image (uint8) and its float32 heatmap once; ``num_workers`` DataLoader workers cut
  the crops from the cache; the workers augment each crop, or the real :class:`Stage2Trainer` augments
  each batch at once (:class:`BatchStage2Augmentation`), as the bundle's ``batched_augmentation`` chooses
  for the device and worker count by default; the trainer runs the step with the chosen precision
  (default: the bundle's own);
* ``reference``: the public implementation's pipeline: five JPEG crop files and five JPEG heatmap crop
  files written per image, each decoded and augmented per sample by a standard torch ``DataLoader``
  (same worker count, same augmentation chain), and a plain float32 training loop;
* ``reference_same_precision``: the same, with ours' precision in the loop (not run where that is float32),
  so that ours / it is the pipeline's own gain, apart from what the precision gives;
* ``compute``: the pure-compute bound of ``ours``: the same precision and the first batches of
  ``ours`` held in memory, so no data work at all.

Every run restores the same initial weights and a fresh SGD: fused for ours and its compute bound where the
bundles fuse it (:func:`~camcontrast_monai.engines.fused_supported`), torch's default for the reference. Reported per pipeline: crops/s
(median/min/max over rounds), the data-wait fraction (time spent waiting for the next batch / step
time), peak memory (PSS of this process and its workers, sampled during the warm-up steps only, since
sampling slows the step; on GPU also the peak allocated GPU memory) and bytes on disk; and per round
the ratios (a) ours/reference, (b) ours/reference at the same precision and (c) ours/compute.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.data import DataLoader as MonaiDataLoader
from monai.transforms import Compose
from PIL import Image

from camcontrast_monai.apps.bench.step import (
    HEATMAP_STRIDE,
    TEMPERATURE,
    bf16_supported,
    parse_variant,
    spread,
    synchronize,
)
from camcontrast_monai.apps.bundle import bundle_item
from camcontrast_monai.data.datasets import FixedCropDataset
from camcontrast_monai.engines.heatmaps import generate_heatmaps
from camcontrast_monai.engines.optimizers import fused_supported
from camcontrast_monai.engines.trainers import Stage2Trainer, autocast_context, resolve_autocast_dtype
from camcontrast_monai.losses.ntxent import ImageHeatmapNTXentLoss
from camcontrast_monai.networks.cam_classifier import CAMClassifier
from camcontrast_monai.networks.contrastive import CAMContrastNet
from camcontrast_monai.networks.heatmaps import cam_heatmaps
from camcontrast_monai.transforms.augment import stage2_image_augmentation
from camcontrast_monai.transforms.batch_augment import BatchStage2Augmentation, resolve_batched_augmentation
from camcontrast_monai.transforms.crops import paired_crop_boxes
from camcontrast_monai.utils.runtime import tune_malloc

__all__ = [
    "PIPELINES",
    "ReferenceCropDataset",
    "bench_heatmaps",
    "bench_pipeline",
    "format_pipeline_report",
    "write_reference_crops",
    "write_source_images",
]

PIPELINES = ("ours", "reference", "reference_same_precision", "compute")
LEARNING_RATE = 0.001
MOMENTUM = 0.95
RATIO_LABELS = {
    "ours_over_reference": "(a) ours / reference (fp32)",
    "ours_over_reference_same_precision": "(b) ours / reference at ours' precision",
    "ours_over_compute": "(c) ours / compute",
}
JPEG_QUALITY = 95  # what OpenCV's imwrite, used by the public implementation, writes by default


# ----------------------------------------------------------------------------------------------- data
def write_source_images(
    root: str | Path, n_images: int, source_size: int, heatmap_size: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Write ``n_images`` synthetic RGB JPEG photographs and their float32 ``.npy`` heatmaps; return the datalist.

    Images are smooth colour fields with fine noise (so JPEG sizes are photograph-like); every second
    image is "normal" and gets an all-zero heatmap, as negative suppression leaves it.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "heatmaps").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    datalist = []
    for index in range(n_images):
        coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, 8, 8)).astype(np.float32))
        smooth = torch.nn.functional.interpolate(coarse, size=(source_size, source_size), mode="bicubic")[0]
        pixels = smooth.permute(1, 2, 0).numpy() + rng.normal(0, 6, (source_size, source_size, 3))
        image_path = root / "images" / f"img{index:05d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(image_path, quality=JPEG_QUALITY)
        label = index % 2
        heatmap = rng.uniform(0, 1, (heatmap_size, heatmap_size)).astype(np.float32) * label
        heatmap_path = root / "heatmaps" / f"img{index:05d}.npy"
        np.save(heatmap_path, heatmap)
        datalist.append(
            {"id": f"img{index:05d}", "image": str(image_path), "heatmap": str(heatmap_path), "label": label}
        )
    return datalist


def write_reference_crops(
    datalist: Sequence[dict[str, Any]], root: str | Path, image_size: int
) -> list[dict[str, Any]]:
    """The public implementation's crop set: per image, five JPEG image crops and five JPEG heatmap crops.

    Each image is resized to ``image_size`` (area), cut into the fixed crops (TL, TR, BL, BR, C) and
    every crop saved as its own JPEG; the heatmap crops are saved as 8-bit JPEG images. Returns one
    entry per crop: ``{"image": crop path, "heatmap": heatmap crop path}``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    crops = []
    for entry in datalist:
        with Image.open(entry["image"]) as source:
            image = np.asarray(source.convert("RGB").resize((image_size, image_size), Image.BOX))
        heatmap = np.load(entry["heatmap"])
        heatmap_u8 = np.clip(np.round(heatmap * 255), 0, 255).astype(np.uint8)
        boxes = paired_crop_boxes({"image": image.shape[:2], "heatmap": heatmap.shape})  # the crops ours cuts
        for position, (image_box, heatmap_box) in enumerate(zip(boxes["image"], boxes["heatmap"], strict=True)):
            stem = root / f"{Path(entry['image']).stem}_{position}"
            Image.fromarray(image[image_box]).save(f"{stem}.jpg", quality=JPEG_QUALITY)
            Image.fromarray(heatmap_u8[heatmap_box]).save(f"{stem}_heatmap.jpg", quality=JPEG_QUALITY)
            crops.append({"image": f"{stem}.jpg", "heatmap": f"{stem}_heatmap.jpg"})
    return crops


class ReferenceCropDataset(torch.utils.data.Dataset):
    """Per sample: decode one crop JPEG and one heatmap JPEG, scale to [0, 1], augment the image crop."""

    def __init__(self, crops: Sequence[dict[str, Any]], augmentation: Callable) -> None:
        self.crops = list(crops)
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        entry = self.crops[index]
        with Image.open(entry["image"]) as crop:
            image = torch.from_numpy(np.array(crop.convert("RGB"))).permute(2, 0, 1).float() / 255.0
        with Image.open(entry["heatmap"]) as crop:
            heatmap = torch.from_numpy(np.array(crop.convert("L"))).unsqueeze(0).float() / 255.0
        image = self.augmentation({"image": image})["image"]
        return torch.as_tensor(image, dtype=torch.float32), heatmap


def ours_transforms(image_size: int, crop_size: int, batched_augmentation: bool = True) -> tuple[Compose, Compose]:
    """The fundus bundle's stage-2 ``image_transform`` (cached) and ``crop_transform`` (per crop), read from its
    pretrain.json, so the benchmark times what the bundle ships.

    With ``batched_augmentation`` the crop transform leaves the crop unaugmented: the trainer augments
    whole batches with :class:`BatchStage2Augmentation`.
    """
    sizes = {"image_size": image_size, "crop_size": crop_size, "batched_augmentation": batched_augmentation}
    configs = ["common.json", "pretrain.json"]
    return bundle_item("train#image_transform", configs, **sizes), bundle_item("train#crop_transform", configs, **sizes)


# -------------------------------------------------------------------------------------------- memory
def _pss_kib(pid: int) -> int:
    """Proportional set size of a process (KiB; shared pages split between sharers), RSS where PSS is unreadable."""
    for path, field in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            with open(path) as handle:
                for line in handle:
                    if line.startswith(field):
                        return int(line.split()[1])
        except OSError:
            continue
    return 0


def _children(pid: int) -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                pids += [int(p) for p in handle.read().split()]
    return pids


class _PeakMemory:
    """Samples the PSS of this process and its child processes (DataLoader workers) in a thread; keeps the peak.

    Reading ``smaps_rollup`` walks a process's page tables: with two forked workers that share this
    process's multi-GB address space, sampling every 50 ms made the training step about 1.9x slower
    (1.3 s -> 2.6 s per step at crop 96, batch 32). So the benchmark samples during the warm-up steps
    only and calls :meth:`stop` before the timed steps; the warm-up steps hold the same activations,
    weights and worker memory as the timed ones.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pid = os.getpid()
        self.peak_kib = max(self.peak_kib, _pss_kib(pid) + sum(_pss_kib(child) for child in _children(pid)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        """Take a last sample and stop sampling (idempotent)."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self.sample()

    def __enter__(self) -> _PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------- runs
class _Timer:
    """Step time and data-wait time of the timed steps (those after ``warmup``); ``on_timing_start`` runs
    once, just before the first timed step (it stops the memory sampler)."""

    def __init__(self, device: torch.device, warmup: int, on_timing_start: Callable[[], None] = lambda: None) -> None:
        self.device, self.warmup, self.on_timing_start = device, warmup, on_timing_start
        self.start = self.end = 0.0
        self.data_wait = 0.0
        self._fetch_started = 0.0
        self.step = 0

    def fetch_started(self) -> None:
        self._fetch_started = time.perf_counter()

    def fetch_completed(self) -> None:
        if self.step >= self.warmup:
            self.data_wait += time.perf_counter() - self._fetch_started

    def step_completed(self) -> None:
        self.step += 1
        if self.step == self.warmup:
            self.on_timing_start()
            synchronize(self.device)
            self.start = time.perf_counter()

    def finish(self) -> None:
        synchronize(self.device)
        self.end = time.perf_counter()


def _run_ours(
    network, loader, loss_fn, device, autocast_dtype, channels_last, warmup, steps, batch_augmentation, memory
) -> _Timer:
    # the bundles' optimiser: fused where torch has the kernels (fused_optimizer in their common.json)
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, fused=fused_supported(device))
    trainer = Stage2Trainer(
        device=device, max_epochs=1, epoch_length=warmup + steps, train_data_loader=loader, network=network,
        optimizer=optimizer, loss_function=loss_fn, autocast_dtype=autocast_dtype, channels_last=channels_last,
        batch_augmentation=batch_augmentation,
    )  # fmt: skip
    timer = _Timer(device, warmup, memory.stop)
    trainer.add_event_handler(Events.GET_BATCH_STARTED, lambda _: timer.fetch_started())
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, lambda _: timer.fetch_completed())
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: timer.step_completed())
    trainer.run()
    timer.finish()
    return timer


def _run_plain(
    network, batches: Iterator, loss_fn, device, autocast_dtype, channels_last, warmup, steps, memory, fused=False
) -> _Timer:
    """The public implementation's loop (also used for the compute bound on in-memory batches, with ours' ``fused``)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    network.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, fused=fused or None)
    timer = _Timer(device, warmup, memory.stop)
    for _ in range(warmup + steps):
        timer.fetch_started()
        image, heatmap = next(batches)
        timer.fetch_completed()
        image = image.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        heatmap = heatmap.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, autocast_dtype):
            z_image, z_heatmap = network(image, heatmap)
        loss_fn(z_image, z_heatmap).backward()
        optimizer.step()
        timer.step_completed()
    timer.finish()
    return timer


def _dir_bytes(paths: Sequence[str]) -> int:
    return sum(os.path.getsize(p) for p in paths)


def bench_pipeline(
    width: int = 64,
    crop_size: int = 96,
    batch_size: int = 32,
    steps: int = 3,
    warmup: int = 2,
    rounds: int = 3,
    num_workers: int = 2,
    precision: str = "shipped",
    batched_augmentation: bool | str = "shipped",
    n_images: int | None = None,
    source_size: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    workdir: str | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """End-to-end stage-2 crops/s: our cached pipeline vs a reference-style crop-file pipeline vs pure compute.

    The three alternate over ``rounds`` in one process; prints a table (``verbose``) and returns the results.

    Args:
        width: U-Net encoder width (64 = the paper's).
        crop_size: crop side in pixels; images are resized to twice this and cut into the five fixed crops,
            as the bundle's ``crop_size = image_size // 2``.
        batch_size: crops per step.
        steps: timed steps per pipeline and round.
        warmup: untimed steps first (worker start-up, kernel selection); at least 1.
        rounds: the pipelines run alternately this many times; min/median/max are over rounds.
        num_workers: DataLoader workers of both pipelines.
        precision: the ``bench step`` variant of ours and compute (fp32, bf16, fp32+channels_last,
            bf16+channels_last); ``shipped`` (the default): the fundus bundle's own ``autocast_dtype`` and
            ``channels_last``; ``auto``: bf16+channels_last where bf16 works, else fp32. The reference runs
            float32, as the public implementation does, and once more at ours' precision
            (``reference_same_precision``, run only where that precision is not fp32), so the report gives
            (a) ours / reference, (b) ours / reference at the same precision, the pipeline's own gain, and
            (c) ours / compute.
        batched_augmentation: True: ours augments whole batches in the trainer (:class:`BatchStage2Augmentation`);
            False: each crop in the workers, as the reference does; ``shipped`` (the default): the fundus
            bundle's own choice for ``device`` and ``num_workers`` (its ``"auto"``: batched on a GPU or
            without workers, else in the workers).
        n_images: source images (default: enough for one pass of ``warmup + steps`` batches).
        source_size: side of the written source images (default: 1.25 x the resized side ``2 * crop_size``).
        device: cpu or cuda.
        seed: seed of the images, the weights and the augmentation.
        workdir: where the data are written (default: a temporary folder, deleted afterwards).
        verbose: print the table.
    """
    if min(width, batch_size, steps, rounds, warmup) < 1 or num_workers < 0:
        raise ValueError("width, batch_size, steps, rounds and warmup must be >= 1 and num_workers >= 0")
    if crop_size % HEATMAP_STRIDE:
        raise ValueError(f"crop_size must be a multiple of {HEATMAP_STRIDE}, got {crop_size}")
    device_t = torch.device(device)
    malloc_tuned = tune_malloc()
    precision, notes = _resolve_precision(precision, device_t)
    batched_augmentation = _resolve_augmentation(batched_augmentation, device_t, num_workers, notes)
    image_size = 2 * crop_size
    n_images = _check_n_images(n_images, batch_size, warmup + steps)
    source_size = source_size or image_size + image_size // 4

    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_")))
        datalist, reference_crops, bytes_on_disk = _write_bench_data(root, n_images, source_size, image_size, seed)
        setup_start = time.perf_counter()
        ours_dataset, batch_augmentation = _ours_dataset(
            datalist, image_size, crop_size, batched_augmentation, num_workers, seed
        )
        cache_seconds = time.perf_counter() - setup_start
        reference_dataset = ReferenceCropDataset(
            reference_crops, stage2_image_augmentation(keys="image", spatial_size=[crop_size, crop_size])
        )
        torch.manual_seed(seed)
        network = CAMContrastNet(width=width).to(device_t).train()
        initial_state = copy.deepcopy(network.state_dict())
        runners = _pipeline_runners(
            network, ours_dataset, batch_augmentation, reference_dataset, device=device_t, precision=precision,
            batch_size=batch_size, num_workers=num_workers, warmup=warmup, steps=steps,
        )  # fmt: skip
        rates, wait, peak_kib, peak_gpu = _alternate_pipelines(network, initial_state, runners, rounds, batch_size * steps)

    report = {
        "config": {
            "width": width, "crop_size": crop_size, "image_size": image_size, "batch_size": batch_size,
            "steps": steps, "warmup": warmup, "rounds": rounds, "num_workers": num_workers, "precision": precision,
            "batched_augmentation": batched_augmentation, "n_images": n_images, "source_size": source_size,
            "device": str(device_t), "seed": seed,
        },  # fmt: skip
        "pipelines": _pipeline_rows(rates, wait, peak_kib, peak_gpu if device_t.type == "cuda" else None),
        "ours_over_reference": _ours_over(rates, "reference"),
        "ours_over_reference_same_precision": _ours_over(rates, "reference_same_precision"),
        "ours_over_compute": _ours_over(rates, "compute"),
        "bytes_on_disk": bytes_on_disk,
        "disk_ratio_ours": (bytes_on_disk["source_images"] + bytes_on_disk["ours_heatmaps"])
        / bytes_on_disk["source_images"],
        "disk_ratio_reference": bytes_on_disk["reference_crops"] / bytes_on_disk["source_images"],
        "cache_seconds": cache_seconds,
        "threads": torch.get_num_threads(),
        "malloc_tuned": malloc_tuned,
        "notes": notes,
    }
    if verbose:
        print(format_pipeline_report(report))
    return report


def _resolve_precision(precision: str, device: torch.device) -> tuple[str, list[str]]:
    """The ``bench step`` variant that ``precision`` names, and a note on where it came from.

    ``shipped`` reads the fundus bundle's ``autocast_dtype`` and ``channels_last``; ``auto`` is
    bf16+channels_last where the device runs bf16 natively (``bf16_supported``), else fp32. An unknown variant
    raises here, before any data are written.
    """
    notes: list[str] = []
    if precision == "shipped":
        autocast_dtype = resolve_autocast_dtype(device, bundle_item("autocast_dtype"))
        precision = ("bf16" if autocast_dtype == "bfloat16" else "fp32") + ("+channels_last" if bundle_item("channels_last") else "")
        notes.append(f"precision shipped -> {precision}: the fundus bundle's autocast_dtype and channels_last")
    elif precision == "auto":
        bf16_ok, why = bf16_supported(device)
        precision = "bf16+channels_last" if bf16_ok else "fp32"
        if not bf16_ok:
            notes.append(f"precision auto -> fp32: {why}")
    parse_variant(precision)
    if precision == "fp32":
        notes.append("ours runs fp32, as the reference does: reference_same_precision is the reference run itself")
    return precision, notes


def _resolve_augmentation(value: bool | str, device: torch.device, num_workers: int, notes: list[str]) -> bool:
    """Whether ours augments in batches: ``value``, or for ``shipped`` the fundus bundle's own switch resolved
    for ``device`` and ``num_workers``, with a note saying so."""
    if value != "shipped":
        return resolve_batched_augmentation(value, device, num_workers)
    shipped = bundle_item("batched_augmentation", ["common.json", "pretrain.json"])
    batched = resolve_batched_augmentation(shipped, device, num_workers)
    notes.append(f"batched_augmentation shipped ({shipped!r}) -> {batched} on {device} with {num_workers} workers")
    return batched


def _check_n_images(n_images: int | None, batch_size: int, batches: int) -> int:
    """``n_images``, or by default the fewest images whose five crops fill ``batches`` batches; raise if too few."""
    needed_images = -(-batches * batch_size // 5)
    n_images = n_images or needed_images
    if n_images < needed_images:
        raise ValueError(f"n_images={n_images} gives fewer than {batches} batches of {batch_size} crops")
    return n_images


def _ours_dataset(
    datalist: Sequence[dict[str, Any]],
    image_size: int,
    crop_size: int,
    batched_augmentation: bool,
    num_workers: int,
    seed: int,
) -> tuple[FixedCropDataset, BatchStage2Augmentation | None]:
    """Our cached crop dataset (decoding and resizing every image now) and the trainer's batch augmentation
    (None where the workers augment each crop instead)."""
    image_transform, crop_transform = ours_transforms(image_size, crop_size, batched_augmentation)
    batch_augmentation = (
        BatchStage2Augmentation(spatial_size=[crop_size, crop_size], seed=seed) if batched_augmentation else None
    )
    dataset = FixedCropDataset(datalist, image_transform, crop_transform, num_workers=num_workers, progress=False)
    return dataset, batch_augmentation


def _pipeline_runners(
    network: torch.nn.Module,
    ours_dataset: FixedCropDataset,
    batch_augmentation: BatchStage2Augmentation | None,
    reference_dataset: ReferenceCropDataset,
    *,
    device: torch.device,
    precision: str,
    batch_size: int,
    num_workers: int,
    warmup: int,
    steps: int,
) -> dict[str, Callable[[_PeakMemory], _Timer]]:
    """One run of each of :data:`PIPELINES`, as a function of the memory sampler, in the order they alternate.

    The ``compute`` batches are the first ``warmup + steps`` batches of ours, drawn here once and held in memory.
    """
    autocast_dtype, channels_last = parse_variant(precision)
    loss_fn = ImageHeatmapNTXentLoss(TEMPERATURE)

    def shuffled_batches(loader_class: type, dataset: torch.utils.data.Dataset) -> torch.utils.data.DataLoader:
        return loader_class(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers)

    def reference_run(reference_dtype: str | None, reference_channels_last: bool) -> Callable[[_PeakMemory], _Timer]:
        return lambda memory: _run_plain(
            network, iter(shuffled_batches(torch.utils.data.DataLoader, reference_dataset)), loss_fn, device,
            reference_dtype, reference_channels_last, warmup, steps, memory,
        )  # fmt: skip

    resident = [
        (batch["image"], batch["heatmap"])
        for batch, _ in zip(shuffled_batches(MonaiDataLoader, ours_dataset), range(warmup + steps), strict=False)
    ]
    return {
        "ours": lambda memory: _run_ours(
            network, shuffled_batches(MonaiDataLoader, ours_dataset), loss_fn, device, autocast_dtype, channels_last,
            warmup, steps, batch_augmentation, memory,
        ),
        "reference": reference_run(None, False),
        **({} if precision == "fp32" else {"reference_same_precision": reference_run(autocast_dtype, channels_last)}),
        "compute": lambda memory: _run_plain(
            network, iter(resident), loss_fn, device, autocast_dtype, channels_last, warmup, steps, memory,
            fused=fused_supported(device),
        ),
    }  # fmt: skip


def _write_bench_data(
    root: Path, n_images: int, source_size: int, image_size: int, seed: int
) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, int]]:
    """Source images with heatmaps (ours) and the reference's crop files of them, and the bytes each takes on disk."""
    datalist = write_source_images(root / "source", n_images, source_size, image_size // HEATMAP_STRIDE, seed)
    reference_crops = write_reference_crops(datalist, root / "reference_crops", image_size)
    bytes_on_disk = {
        "source_images": _dir_bytes([d["image"] for d in datalist]),
        "ours_heatmaps": _dir_bytes([d["heatmap"] for d in datalist]),
        "reference_crops": _dir_bytes([c["image"] for c in reference_crops] + [c["heatmap"] for c in reference_crops]),
    }
    return datalist, reference_crops, bytes_on_disk


def _alternate_pipelines(
    network: torch.nn.Module,
    initial_state: dict[str, torch.Tensor],
    runners: dict[str, Callable[[Any], Any]],
    rounds: int,
    timed_crops: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int], dict[str, int]]:
    """Run every pipeline once per round, in turn, each from the initial weights: per pipeline the crops/s and
    data-wait fraction of each round, and the peak host (KiB) and GPU (bytes) memory over the rounds."""
    device = next(network.parameters()).device
    rates: dict[str, list[float]] = {p: [] for p in runners}
    wait: dict[str, list[float]] = {p: [] for p in runners}
    peak_kib = dict.fromkeys(runners, 0)
    peak_gpu = dict.fromkeys(runners, 0)
    for _ in range(rounds):
        for pipeline, run in runners.items():
            network.to(memory_format=torch.contiguous_format)
            network.load_state_dict(initial_state)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with _PeakMemory() as memory:
                timer = run(memory)
            elapsed = timer.end - timer.start
            rates[pipeline].append(timed_crops / elapsed)
            wait[pipeline].append(timer.data_wait / elapsed)
            peak_kib[pipeline] = max(peak_kib[pipeline], memory.peak_kib)
            if device.type == "cuda":
                peak_gpu[pipeline] = max(peak_gpu[pipeline], torch.cuda.max_memory_allocated(device))
    network.to(memory_format=torch.contiguous_format)
    return rates, wait, peak_kib, peak_gpu


def _pipeline_rows(
    rates: dict[str, list[float]],
    wait: dict[str, list[float]],
    peak_kib: dict[str, int],
    peak_gpu: dict[str, int] | None,
) -> dict[str, dict[str, Any]]:
    """:func:`bench_pipeline`'s row per pipeline; ``peak_gpu`` is None on the CPU, where there is no GPU memory to report."""
    return {
        p: {
            "crops_per_s": spread(rates[p]),
            "data_wait_fraction": spread(wait[p]),
            "peak_memory_mib": peak_kib[p] / 1024,
            "peak_gpu_memory_mib": peak_gpu[p] / 2**20 if peak_gpu is not None else None,
        }
        for p in rates
    }


def _ours_over(rates: dict[str, list[float]], other: str) -> dict[str, Any]:
    """Ours' crops/s over ``other``'s, round by round, since the two ran alternately in each round; the
    reference at ours' precision is the reference itself where ours runs fp32 (and was not run twice)."""
    other = other if other in rates else "reference"
    return spread([o / r for o, r in zip(rates["ours"], rates[other], strict=True)])


def format_pipeline_report(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`bench_pipeline`'s result."""
    c = report["config"]
    lines = [
        f"stage-2 pipelines, end to end: width {c['width']}, crop {c['crop_size']} (image {c['image_size']}), "
        f"batch {c['batch_size']}, {c['steps']} timed steps x {c['rounds']} rounds, {c['num_workers']} workers, "
        f"ours/compute precision {c['precision']}, ours augments "
        f"{'each batch in the trainer' if c['batched_augmentation'] else 'each crop in the workers'}, reference fp32, "
        f"device {c['device']}, {report['threads']} threads",
        f"{'pipeline':<24} {'crops/s med':>11} {'min':>8} {'max':>8} {'data wait med':>13} {'max':>6} "
        f"{'peak PSS MiB':>12} {'GPU MiB':>8}",
    ]
    for name, row in report["pipelines"].items():
        rate, wait = row["crops_per_s"], row["data_wait_fraction"]
        gpu = f"{row['peak_gpu_memory_mib']:.0f}" if row["peak_gpu_memory_mib"] is not None else "-"
        lines.append(
            f"{name:<24} {rate['median']:>11.2f} {rate['min']:>8.2f} {rate['max']:>8.2f} "
            f"{100 * wait['median']:>12.1f}% {100 * wait['max']:>5.1f}% {row['peak_memory_mib']:>12.0f} {gpu:>8}"
        )
    for key, label in RATIO_LABELS.items():
        r = report[key]
        lines.append(f"{label:<40} median {r['median']:.2f}  min {r['min']:.2f}  max {r['max']:.2f}  (per round)")
    b = report["bytes_on_disk"]
    lines.append(
        f"on disk: source images {b['source_images'] / 2**20:.2f} MiB; ours +heatmaps {b['ours_heatmaps'] / 2**20:.3f} MiB "
        f"({report['disk_ratio_ours']:.3f}x the sources); reference crop files {b['reference_crops'] / 2**20:.2f} MiB "
        f"({report['disk_ratio_reference']:.2f}x); image cache built in {report['cache_seconds']:.1f} s"
    )
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ heatmaps
def bench_heatmaps(
    width: int = 64,
    image_size: int = 448,
    n_images: int = 32,
    batch_size: int = 16,
    rounds: int = 3,
    num_workers: int = 2,
    device: str = "cpu",
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Images/s of CAM heatmap generation (read, resize, CAM, suppression, write) and of the CAM pass alone.

    :func:`generate_heatmaps` and the classifier's CAM pass on the same images held in memory
    (``compute``, the upper bound) alternate in each round.

    Args:
        width: classifier U-Net encoder width (64 = the paper's).
        image_size: side the images are resized to (448 = the fundus bundle's).
        n_images: images per round.
        batch_size: images per classifier batch.
        rounds: repetitions; min/median/max are over rounds.
        num_workers: DataLoader workers reading the images.
        device: cpu or cuda.
        seed: seed of the images and the classifier's weights.
        verbose: print the table.
    """
    if min(width, image_size, n_images, batch_size, rounds) < 1:
        raise ValueError("width, image_size, n_images, batch_size and rounds must be positive")
    device_t = torch.device(device)
    tune_malloc()
    torch.manual_seed(seed)
    classifier = CAMClassifier(spatial_dims=2, in_channels=3, num_classes=2, width=width).to(device_t).eval()
    transform = bundle_item("load_image", image_size=image_size)  # the fundus bundle's, as heatmaps.json loads
    full, compute = [], []
    with tempfile.TemporaryDirectory(prefix="bench_heatmaps_") as root:
        datalist = write_source_images(Path(root) / "source", n_images, image_size + image_size // 4, 1, seed)
        resident = torch.stack([torch.as_tensor(transform(dict(d))["image"]) for d in datalist])
        for round_index in range(rounds):
            out_dir = Path(root) / f"out{round_index}"
            full.append(_generation_rate(classifier, datalist, transform, out_dir, batch_size, num_workers, device_t))
            compute.append(_cam_pass_rate(classifier, resident, batch_size, device_t))
    report = {
        "config": {
            "width": width, "image_size": image_size, "n_images": n_images, "batch_size": batch_size,
            "rounds": rounds, "num_workers": num_workers, "device": str(device_t),
        },  # fmt: skip
        "images_per_s": spread(full),
        "compute_images_per_s": spread(compute),
    }
    if verbose:
        print(_format_heatmaps_report(report))
    return report


def _generation_rate(
    classifier: torch.nn.Module,
    datalist: Sequence[dict[str, Any]],
    transform: Callable,
    out_dir: Path,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> float:
    """Images/s of one :func:`generate_heatmaps` run over ``datalist``, from image files to heatmap files."""
    start = time.perf_counter()
    generate_heatmaps(
        classifier, datalist, transform, str(out_dir), batch_size=batch_size, num_workers=num_workers, device=device
    )
    synchronize(device)
    return len(datalist) / (time.perf_counter() - start)


def _cam_pass_rate(classifier: torch.nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Images/s of the classifier's CAM pass alone over ``images`` held in memory: the upper bound of generation."""
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, len(images), batch_size):
            cam_heatmaps(classifier, images[first : first + batch_size].to(device))
    synchronize(device)
    return len(images) / (time.perf_counter() - start)


def _format_heatmaps_report(report: dict[str, Any]) -> str:
    """A plain-text summary of :func:`bench_heatmaps`'s result."""
    c, f, k = report["config"], report["images_per_s"], report["compute_images_per_s"]
    return (
        f"heatmap generation: width {c['width']}, image {c['image_size']}, {c['n_images']} images, "
        f"batch {c['batch_size']}, {c['num_workers']} workers, device {c['device']}, {c['rounds']} rounds\n"
        f"full (read+resize+CAM+suppression+write): {f['median']:.2f} images/s (min {f['min']:.2f}, "
        f"max {f['max']:.2f})\n"
        f"CAM pass only, images in memory:          {k['median']:.2f} images/s (min {k['min']:.2f}, "
        f"max {k['max']:.2f})"
    )
