"""The ``camcontrast`` command line (python-fire).

    camcontrast demo [--bundle fundus|cxr|mri3d] [--quick] [--out DIR]
    camcontrast check-data SHEET|FOLDER [--images DIR]
    camcontrast probe --encoders camcontrast=model.pt,random --dataset_dir DIR [--bundle fundus]
    camcontrast bench schedule --snapshot_dir DIR --dataset_dir DIR --steps_per_epoch N
    camcontrast bench step [--width 64 --crop_size 224 --batch_size 8]
    camcontrast bench compare --out DIR [--methods camcontrast,supce-crop,simclr-crop,random] [--seeds 0,1,2]
    camcontrast synth fundus --out DIR --n N --seed S
    camcontrast synth cxr --out DIR --n N --seed S
    camcontrast bundle list | path NAME | export NAME DIR
"""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path

import fire

from camcontrast_monai.runtime import tune_malloc
from camcontrast_monai.utils import as_switch


def coerce_switches(cls: type) -> type:
    """Pass every ``bool`` parameter of the commands of ``cls`` through :func:`as_switch`.

    fire hands ``--quick false`` over as the string 'false' (truthy); this makes it False, and refuses
    anything that is not a boolean spelling, naming the flag, instead of running the wrong experiment.
    """
    for name, command in vars(cls).copy().items():
        if name.startswith("_") or not callable(command):
            continue
        signature = inspect.signature(command)
        flags = [p.name for p in signature.parameters.values() if p.annotation in (bool, "bool")]
        if flags:
            setattr(cls, name, _with_switches(command, signature, flags))
    return cls


def _with_switches(command, signature: inspect.Signature, flags: list[str]):
    @functools.wraps(command)
    def run(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        try:
            for flag in set(flags) & set(bound.arguments):
                bound.arguments[flag] = as_switch(bound.arguments[flag], f"--{flag}")
        except ValueError as error:
            raise SystemExit(f"camcontrast: {error}") from None
        return command(*bound.args, **bound.kwargs)

    return run


class Synth:
    """Write synthetic data sets in the real data sets' file formats."""

    def fundus(
        self, out: str, n: int = 200, seed: int = 0, image_size: int = 256, class_ratio: float = 0.8, image_format: str = "png"
    ) -> str:
        """Colour fundus photographs with lesion masks, an ODIR-style sheet, IDRiD-style grading and labels.csv.

        Args:
            out: output folder (created).
            n: number of images (pairs of left/right eyes share a patient id).
            seed: the same seed gives byte-identical files.
            image_size: square image side in pixels.
            class_ratio: minority/majority class count (the paper's default 0.8: abnormal is the majority).
            image_format: "png" or "jpg".
        """
        from camcontrast_monai.data.synthetic_fundus import write_fundus_dataset

        manifest = write_fundus_dataset(
            Path(out), n=n, seed=seed, image_size=image_size, class_ratio=class_ratio, image_format=image_format
        )
        counts = manifest["class_counts"]
        return f"wrote {n} images to {out} ({counts})"

    def mri(self, out: str, n: int = 60, seed: int = 0, max_sessions: int = 2) -> str:
        """T1-weighted brain MRI (CN / MCI / AD, 80x96x80 NIfTI) in a Clinica layout with a ClinicaDL labels.tsv.

        Args:
            out: output folder (created): labels.tsv, subjects/<participant>/<session>/t1_linear/*.nii.gz,
                atrophy/*_atrophy.nii.gz (ground-truth atrophy masks) and manifest.json.
            n: number of subjects.
            seed: the same seed gives the same volumes.
            max_sessions: each subject gets 1 to this many sessions, 12 months apart.
        """
        from camcontrast_monai.data.synthetic_mri import write_mri_dataset

        manifest = write_mri_dataset(Path(out), n_subjects=n, seed=seed, max_sessions=max_sessions)
        return f"wrote {manifest['n_sessions']} sessions of {n} subjects to {out} ({manifest['subjects_per_diagnosis']})"

    def cxr(self, out: str, n: int = 200, n_siim: int = 100, seed: int = 0, image_size: int = 256) -> str:
        """Chest radiographs in ChestX-ray14's layout (out/chestxray14) and SIIM-ACR's (out/siim, DICOM + RLE CSV).

        Args:
            out: output folder (created); the chest X-ray bundle reads it as its ``dataset_dir``.
            n: number of ChestX-ray14-like PNG images (patients have 1-3 images).
            n_siim: number of SIIM-ACR-like DICOM images (half with a pneumothorax).
            seed: the same seed gives the same images.
            image_size: square image side in pixels.
        """
        from camcontrast_monai.data.synthetic_cxr import write_chestxray14_dataset, write_siim_dataset

        chest = write_chestxray14_dataset(Path(out) / "chestxray14", n=n, seed=seed, image_size=image_size)
        siim = write_siim_dataset(Path(out) / "siim", n=n_siim, seed=seed + 1000, image_size=image_size)
        return f"wrote {n} ChestX-ray14-like images ({chest}) and {n_siim} SIIM-ACR-like DICOMs ({siim}) to {out}"


@coerce_switches
class Bench:
    """Benchmarks that print ratios against a baseline measured in the same process."""

    def step(
        self,
        width: int = 64,
        crop_size: int = 224,
        batch_size: int = 8,
        steps: int = 5,
        warmup: int = 2,
        rounds: int = 3,
        variants: str = "fp32,bf16,fp32+channels_last,bf16+channels_last",
        device: str = "cpu",
        peak_size: int = 4096,
    ) -> None:
        """Pure-compute stage-2 training throughput (crops/s, GFLOP/s vs the matmul peak) per precision variant.

        Args:
            width: U-Net encoder width (64 = the paper's).
            crop_size: image crop side in pixels (224 = the paper's).
            batch_size: crops per step.
            steps: timed steps per variant and round.
            warmup: untimed steps before each timing.
            rounds: the variants run alternately this many times; min/median/max are over rounds.
            variants: comma-separated subset of fp32, bf16, fp32+channels_last, bf16+channels_last.
            device: cpu or cuda.
            peak_size: side of the square matmul that measures the peak GFLOP/s.
        """
        from camcontrast_monai.bench import bench_step

        bench_step(
            width=width, crop_size=crop_size, batch_size=batch_size, steps=steps, warmup=warmup, rounds=rounds,
            variants=variants, device=device, peak_size=peak_size,
        )  # fmt: skip

    def pipeline(
        self,
        width: int = 64,
        crop_size: int = 96,
        batch_size: int = 32,
        steps: int = 3,
        warmup: int = 2,
        rounds: int = 3,
        num_workers: int = 2,
        precision: str = "auto",
        batched_augmentation: bool = True,
        device: str = "cpu",
    ) -> None:
        """End-to-end stage-2 crops/s: our cached pipeline vs a reference-style crop-file pipeline vs pure compute.

        Args:
            width: U-Net encoder width (64 = the paper's).
            crop_size: crop side in pixels (images are resized to twice this and cut into 5 fixed crops).
            batch_size: crops per step.
            steps: timed steps per pipeline and round.
            warmup: untimed steps first (worker start-up, kernel selection); at least 1.
            rounds: the pipelines run alternately this many times; min/median/max are over rounds.
            num_workers: DataLoader workers of both pipelines.
            precision: ours/compute variant (fp32, bf16, fp32+channels_last, bf16+channels_last) or auto.
            batched_augmentation: ours augments whole batches in the trainer (the bundle's default); False
                augments each crop in the workers, as the reference does.
            device: cpu or cuda.
        """
        from camcontrast_monai.bench_pipeline import bench_pipeline

        bench_pipeline(
            width=width, crop_size=crop_size, batch_size=batch_size, steps=steps, warmup=warmup, rounds=rounds,
            num_workers=num_workers, precision=precision, batched_augmentation=batched_augmentation, device=device,
        )  # fmt: skip

    def heatmaps(
        self,
        width: int = 64,
        image_size: int = 448,
        n_images: int = 32,
        batch_size: int = 16,
        rounds: int = 3,
        num_workers: int = 2,
        device: str = "cpu",
    ) -> None:
        """Images/s of CAM heatmap generation (read, resize, CAM, suppression, write) and of the CAM pass alone.

        Args:
            width: classifier U-Net encoder width (64 = the paper's).
            image_size: side the images are resized to (448 = the fundus bundle's).
            n_images: images per round.
            batch_size: images per classifier batch.
            rounds: repetitions; min/median/max are over rounds.
            num_workers: DataLoader workers reading the images.
            device: cpu or cuda.
        """
        from camcontrast_monai.bench_pipeline import bench_heatmaps

        bench_heatmaps(
            width=width, image_size=image_size, n_images=n_images, batch_size=batch_size, rounds=rounds,
            num_workers=num_workers, device=device,
        )  # fmt: skip


    def compare(
        self,
        out: str = "compare_output",
        methods: str = "camcontrast,supce-crop,simclr-crop,random",
        tasks: str = "grading,lesions",
        fractions: str = "0.25",
        seeds: str = "0,1,2",
        preset: str = "default",
        dataset_dir: str | None = None,
        num_workers: int = 2,
        embedding_map: bool = True,
        shared_pretraining: bool = False,
        report_only: bool = False,
    ) -> None:
        """Pretraining methods x downstream tasks x label fractions x seeds -> report (resumes where it stopped).

        Args:
            out: folder for data, runs and the report (report/README.md); rerun the same command to resume.
            methods: comma-separated specs: random, camcontrast, simclr[-crop], supce[-crop], supcon[-crop],
                each optionally with ":ablation" or ":key=value" overrides, e.g. "camcontrast:no_attention".
            tasks: comma-separated downstream tasks: grading, lesions, disc_cup, vessels.
            fractions: comma-separated label fractions of the training split.
            seeds: comma-separated seeds (each seed pretrains, splits and fine-tunes anew).
            preset: sizes and learning-rate grid: "default" (about an hour on 2 CPU cores) or "tiny" (a smoke run).
            dataset_dir: a folder with pretrain/ and downstream/ in the fundus bundle's layout; default:
                synthetic data written under out/data.
            num_workers: data-loading worker processes.
            embedding_map: also draw UMAP maps of the first seed's encoders' crop representations (Fig. 8).
            shared_pretraining: pretrain each method once (first seed) and fine-tune every seed from it.
            report_only: run nothing; write the report from the runs finished so far (for the given seeds).
        """
        from camcontrast_monai.compare import run_compare

        run_compare(
            out=out, methods=methods, tasks=tasks, fractions=fractions, seeds=seeds, preset=preset,
            dataset_dir=dataset_dir, num_workers=num_workers, embedding_map=embedding_map,
            shared_pretraining=shared_pretraining, report_only=report_only,
        )  # fmt: skip

    def schedule(
        self, snapshot_dir: str, dataset_dir: str, steps_per_epoch: int, bundle: str = "fundus", classifier: str = "",
        out: str = "schedule_output", n_splits: int = 20, seed: int = 0, **overrides,
    ) -> None:  # fmt: skip
        """Frozen probes of stage-2 encoder snapshots against their steps: where the representation levels off.

        Args:
            snapshot_dir: the epoch<N>.pt files of a stage-2 run started with --encoder_snapshot_epochs [..].
            dataset_dir: the bundle's data folder.
            steps_per_epoch: optimiser steps per stage-2 epoch (the length of its progress bar).
            bundle: fundus, cxr or mri3d.
            classifier: the run's stage-1 classifier.pt, probed as a reference line.
            out: folder for probes.json, schedule_linear.png, schedule_knn.png and report/README.md.
            n_splits: resampled splits shared by every snapshot.
            seed: seed of the splits and of the random encoder.
            **overrides: bundle config values as in the stage-2 run, e.g. --width 16 --image_size 128.
        """
        from camcontrast_monai.apps.schedule import probe_schedule

        probe_schedule(snapshot_dir, dataset_dir, steps_per_epoch, bundle, classifier, out, n_splits, seed, **overrides)


@coerce_switches
class Bundle:
    """The MONAI bundles that ship inside the package (fundus, cxr, mri3d)."""

    def list(self) -> str:
        """Every shipped bundle with its version and the folder it is read from."""
        from camcontrast_monai.apps.bundle import bundle_names, bundle_path, bundle_version

        return "\n".join(f"{name} {bundle_version(name)}  {bundle_path(name)}" for name in bundle_names())

    def path(self, name: str) -> str:
        """The folder of bundle NAME inside this installation (read it, do not write runs into it).

        Args:
            name: camcontrast_fundus, camcontrast_cxr or camcontrast_mri3d (or fundus, cxr, mri3d).
        """
        from camcontrast_monai.apps.bundle import bundle_path

        return str(bundle_path(name))

    def export(self, name: str, out: str = ".", overwrite: bool = False) -> str:
        """Copy bundle NAME to OUT/NAME, an ordinary bundle folder for ``python -m monai.bundle run``.

        Args:
            name: camcontrast_fundus, camcontrast_cxr or camcontrast_mri3d (or fundus, cxr, mri3d).
            out: the folder to put the bundle folder in (created).
            overwrite: replace an existing, non-empty OUT/NAME (its trained models and edits are lost).
        """
        from camcontrast_monai.apps.bundle import export_bundle

        try:
            target = export_bundle(name, out, overwrite=overwrite)
        except (FileExistsError, ValueError) as error:
            raise SystemExit(f"camcontrast bundle export: {error}") from None
        return f"exported {target.name} to {target}; {target / 'docs' / 'README.md'} has its monai.bundle run commands"


@coerce_switches
class CLI:
    """CAMContrast on MONAI: learn transferable encoders from coarse normal/abnormal labels."""

    def __init__(self) -> None:
        self.synth = Synth()
        self.bench = Bench()
        self.bundle = Bundle()

    def demo(
        self, out: str = "demo_output", quick: bool = False, seed: int = 0, num_workers: int = 2, bundle: str = "fundus"
    ) -> None:
        """Synthetic data -> stage 1 -> heatmaps -> stage 2 -> fine-tuning (random vs CAMContrast) -> report.

        Args:
            out: folder for data, runs and the report (report/README.md).
            quick: a ~2-minute smoke run at tiny sizes instead of the ~15-minute default.
            seed: seed of the data, splits and training.
            num_workers: data-loading worker processes.
            bundle: which setting to demonstrate: "fundus" (2D colour photographs), "cxr" (2D chest
                X-rays, multilabel) or "mri3d" (3D brain MRI).
        """
        import importlib

        runners = {
            "fundus": "camcontrast_monai.demo:run_demo",
            "cxr": "camcontrast_monai.demo_cxr:run_cxr_demo",
            "mri3d": "camcontrast_monai.demo_mri3d:run_mri3d_demo",
        }
        if bundle not in runners:
            raise SystemExit(f"unknown demo bundle {bundle!r}; choose one of {sorted(runners)}")
        module, function = runners[bundle].split(":")
        getattr(importlib.import_module(module), function)(out=out, quick=quick, seed=seed, num_workers=num_workers)

    def probe(
        self, encoders: str, dataset_dir: str, bundle: str = "fundus", out: str = "probe_output", n_splits: int = 20,
        seed: int = 0, method: str = "", **overrides,
    ) -> None:  # fmt: skip
        """Frozen-feature probes (linear and kNN) of encoder files on a bundle's labelled downstream images.

        Args:
            encoders: comma-separated name=path pairs: a stage-2 model.pt, a stage-1 classifier.pt or any
                encoder state dict; the name "random" alone is the bundle's random initialisation.
            dataset_dir: the bundle's data folder (what --dataset_dir is for its configs).
            bundle: fundus, cxr or mri3d.
            out: folder for the exported encoders, features, probes.json and report/README.md.
            n_splits: resampled 70/30 train/test splits, shared by every encoder.
            seed: seed of the splits and of the random encoder.
            method: the encoder compared with every other (default: the first).
            **overrides: bundle config values, e.g. --width 16 --image_size 128 (as the encoders were trained).
        """
        from camcontrast_monai.apps.probe import run_probe

        run_probe(bundle, encoders, dataset_dir, out, n_splits, seed, method, **overrides)

    def check_data(
        self,
        sheet: str,
        images: str | None = None,
        format: str = "auto",
        spatial_dims: int = 2,
        channels: int = 3,
        min_size: int = 16,
        pixels: bool = True,
    ) -> None:
        """Check a data set before training and report every problem at once (exit status 1 if any).

        Args:
            sheet: an ODIR annotation sheet (.xlsx/.csv), an IDRiD grading CSV or an image,label CSV; or a
                data-set folder written by `camcontrast synth fundus` (its odir_annotations.csv is checked).
            images: image folder (ODIR/IDRiD; default images/ beside the sheet) or base folder (CSV).
            format: "auto", "odir", "idrid" or "csv".
            spatial_dims: 2 for photographs, 3 for volumes.
            channels: expected image channels.
            min_size: smallest spatial size accepted.
            pixels: decode every image (False: only check that files exist).
        """
        from camcontrast_monai.cli_check import check_data_command

        raise SystemExit(check_data_command(sheet, images, format, spatial_dims, channels, min_size, pixels))


def main() -> None:
    tune_malloc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fire.Fire(CLI(), name="camcontrast")


if __name__ == "__main__":
    main()
