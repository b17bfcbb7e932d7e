"""The ``camcontrast`` command line (python-fire).

    camcontrast demo [--bundle fundus|cxr|mri3d] [--quick] [--out DIR]
    camcontrast check-data SHEET|FOLDER [--images DIR]
    camcontrast diagnose [--bundle fundus|cxr|mri3d] [--output_dir RUNS --pretrain_epochs N --pretrain_batch_size B]
    camcontrast probe --encoders camcontrast=model.pt,random --dataset_dir DIR [--bundle fundus]
    camcontrast bench schedule --snapshot_dir DIR --dataset_dir DIR --steps_per_epoch N
    camcontrast bench step [--width 64 --crop_size 224 --batch_size 8]
    camcontrast bench compare --out DIR [--bundle fundus|cxr|mri3d] [--methods camcontrast,supce-crop,random] [--seeds 0,1,2]
    camcontrast synth fundus --out DIR --n N --seed S
    camcontrast synth cxr --out DIR --n N --seed S
    camcontrast bundle list | path NAME | export NAME DIR
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from pathlib import Path

import fire

from camcontrast_monai.utils import as_switch
from camcontrast_monai.utils.runtime import tune_malloc


def coerce_switches(cls: type) -> type:
    """Pass every ``bool`` parameter of the commands of ``cls`` through :func:`as_switch`.

    fire hands ``--quick false`` over as the string 'false' (truthy); this makes it False, and refuses
    anything that is not a boolean spelling, naming the flag, instead of running the wrong experiment.
    """
    for name, command in vars(cls).copy().items():
        if not name.startswith("_") and callable(command):
            setattr(cls, name, with_switches(command))
    return cls


def with_switches(command):
    """``command`` with its ``bool`` parameters passed through :func:`as_switch` (``command`` itself if it has none)."""
    signature = inspect.signature(command)
    flags = [p.name for p in signature.parameters.values() if p.annotation in (bool, "bool")]
    return _with_switches(command, signature, flags) if flags else command


def import_target(target: str):
    """The function named by ``"package.module:function"``, imported now."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


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
        from camcontrast_monai.synthetic.fundus import write_fundus_dataset

        manifest = write_fundus_dataset(
            Path(out), n=n, seed=seed, image_size=image_size, class_ratio=class_ratio, image_format=image_format
        )
        counts = manifest["class_counts"]
        return f"wrote {n} images to {out} ({counts})"

    def refuge(self, out: str, n: int = 200, seed: int = 0, image_size: int = 256, glaucoma_ratio: float = 0.25) -> str:
        """Fundus photographs for glaucoma classification in REFUGE's Training400 layout (label: cup-to-disc ratio >= 0.6).

        Args:
            out: output folder (created): Training400/Glaucoma/g*.jpg, Training400/Non-Glaucoma/n*.jpg, manifest.json.
            n: number of photographs (one per patient).
            seed: the same seed gives byte-identical files.
            image_size: square image side in pixels.
            glaucoma_ratio: fraction of glaucomatous photographs (REFUGE's own is 0.1).
        """
        from camcontrast_monai.synthetic.refuge import write_refuge_dataset

        manifest = write_refuge_dataset(Path(out), n=n, seed=seed, image_size=image_size, glaucoma_ratio=glaucoma_ratio)
        return f"wrote {n} images to {out} ({manifest['class_counts']})"

    def mri(self, out: str, n: int = 60, seed: int = 0, max_sessions: int = 2) -> str:
        """T1-weighted brain MRI (CN / MCI / AD, 80x96x80 NIfTI) in a Clinica layout with a ClinicaDL labels.tsv.

        Args:
            out: output folder (created): labels.tsv, subjects/<participant>/<session>/t1_linear/*.nii.gz,
                atrophy/*_atrophy.nii.gz (ground-truth atrophy masks) and manifest.json.
            n: number of subjects.
            seed: the same seed gives the same volumes.
            max_sessions: each subject gets 1 to this many sessions, 12 months apart.
        """
        from camcontrast_monai.synthetic.mri import write_mri_dataset

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
        from camcontrast_monai.synthetic.cxr import write_chestxray14_dataset, write_siim_dataset

        chest = write_chestxray14_dataset(Path(out) / "chestxray14", n=n, seed=seed, image_size=image_size)
        siim = write_siim_dataset(Path(out) / "siim", n=n_siim, seed=seed + 1000, image_size=image_size)
        return f"wrote {n} ChestX-ray14-like images ({chest}) and {n_siim} SIIM-ACR-like DICOMs ({siim}) to {out}"


class LazyCommand:
    """A library function as a fire command, imported only when fire reaches it.

    fire shows the function's own signature and docstring, so the CLI restates neither; importing torch and
    MONAI takes seconds, so ``camcontrast --help`` does not. Boolean flags go through :func:`as_switch`; the
    return value (a results dict for Python callers) is dropped, since the function prints its own table,
    unless ``exit_status``: then it is the process's exit status (a check's 0 or 1).
    """

    def __init__(self, target: str, exit_status: bool = False) -> None:
        self.target = target
        self.exit_status = exit_status

    def __get__(self, instance: object, owner: type | None = None):
        if instance is None:  # class access, as fire's help makes when it classifies members: no import
            return self
        function = import_target(self.target)

        @functools.wraps(function)
        def command(*args, **kwargs) -> None:
            result = function(*args, **kwargs)
            if self.exit_status:
                raise SystemExit(result)

        return with_switches(command)


class Bench:
    """Benchmarks that print ratios against a baseline measured in the same process."""

    step = LazyCommand("camcontrast_monai.apps.bench.step:bench_step")
    pipeline = LazyCommand("camcontrast_monai.apps.bench.pipeline:bench_pipeline")
    heatmaps = LazyCommand("camcontrast_monai.apps.bench.pipeline:bench_heatmaps")
    stages = LazyCommand("camcontrast_monai.apps.bench.stages:bench_stages")
    gpu = LazyCommand("camcontrast_monai.apps.bench.gpu_check:run_gpu_check")
    compare = LazyCommand("camcontrast_monai.apps.compare:run_compare")
    schedule = LazyCommand("camcontrast_monai.apps.schedule:probe_schedule")


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

    demo = LazyCommand("camcontrast_monai.apps.demo.driver:run_demo")

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

    check_data = LazyCommand("camcontrast_monai.apps.check_data:check_data_command", exit_status=True)
    diagnose = LazyCommand("camcontrast_monai.apps.diagnose:run_diagnose")


def main() -> None:
    tune_malloc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fire.Fire(CLI(), name="camcontrast")


if __name__ == "__main__":
    main()
