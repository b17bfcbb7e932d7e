"""The ``camcontrast`` command line (python-fire).

    camcontrast demo [--bundle fundus|cxr|mri3d] [--quick] [--out DIR]
    camcontrast check-data SHEET [--images DIR]
    camcontrast bench step [--width 64 --crop_size 224 --batch_size 8]
    camcontrast synth fundus --out DIR --n N --seed S
"""

from __future__ import annotations

import logging
from pathlib import Path

import fire

from camcontrast_monai.runtime import tune_malloc


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
        """
        from camcontrast_monai.bench import bench_step

        bench_step(
            width=width, crop_size=crop_size, batch_size=batch_size, steps=steps, warmup=warmup, rounds=rounds,
            variants=variants,
        )  # fmt: skip


class CLI:
    """CAMContrast on MONAI: learn transferable encoders from coarse normal/abnormal labels."""

    def __init__(self) -> None:
        self.synth = Synth()
        self.bench = Bench()

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
            sheet: an ODIR annotation sheet (.xlsx/.csv), an IDRiD grading CSV or an image,label CSV.
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
    fire.Fire(CLI, name="camcontrast")


if __name__ == "__main__":
    main()
