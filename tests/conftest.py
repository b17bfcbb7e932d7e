"""Fixtures shared by the test files."""

import contextlib
import logging
import os
import socket
import sys
from pathlib import Path

import ignite.distributed
import monai.apps.utils
import monai.bundle.scripts
import pytest

from camcontrast_monai.synthetic import write_fundus_dataset


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if anything opens a socket or calls MONAI's downloaders."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(monai.apps.utils, "_download_with_progress", refuse)
    monkeypatch.setattr(monai.bundle.scripts, "download", refuse)


@pytest.fixture
def restore_logging():
    """``ConfigWorkflow`` applies logging.conf to the process; put the loggers back afterwards."""
    names = [None, "camcontrast_monai", "ignite.engine.engine"]
    saved = []
    for name in names:
        log = logging.getLogger(name)
        saved.append((log, list(log.handlers), log.level, log.propagate))
    path = list(sys.path)
    yield
    for log, handlers, level, propagate in saved:
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate = propagate
    sys.path[:] = path


@pytest.fixture(scope="session")
def mlflow_runs():
    """Reads what ``--tracking mlflow`` wrote: ``output_dir`` -> {run name: {metric: [(step, value), ...]}}."""
    from mlflow.tracking import MlflowClient

    def read(output_dir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
        client = MlflowClient(tracking_uri=f"sqlite:///{Path(output_dir) / 'mlruns.db'}")
        (experiment,) = [e for e in client.search_experiments() if e.name == "monai_experiment"]
        return {
            run.info.run_name: {
                key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)] for key in run.data.metrics
            }
            for run in client.search_runs([experiment.experiment_id])
        }

    return read


@pytest.fixture
def one_process_group():
    """A context in which a ``multi_gpu_*.json`` overlay runs in this process: torchrun's environment for
    rank 0 of one process (the overlay's ``initialize`` creates and its ``finalize`` destroys the group)."""

    @contextlib.contextmanager
    def group():
        saved = dict(os.environ)
        os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"})
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            ignite.distributed.sync()  # Ignite would keep the destroyed process group as its context

    return group


def write_tiny_fundus(folder: Path, n_downstream: int) -> Path:
    """The fundus bundle's ``dataset_dir`` at test size: ``pretrain/`` (16 ODIR-style images, seed 0) and
    ``downstream/`` (``n_downstream`` IDRiD-style images, seed 1), 64 px."""
    write_fundus_dataset(folder / "pretrain", n=16, seed=0, image_size=64)
    write_fundus_dataset(folder / "downstream", n=n_downstream, seed=1, image_size=64)
    return folder


@pytest.fixture(scope="session")
def tiny_data():
    """Writes a tiny data set of a modality in its real layout, with the package's own generators: ``(folder, modality) -> folder``.

    fundus: ``pretrain/`` (16 images) and ``downstream/`` (20); cxr: ``chestxray14/`` (24 PNGs) and
    ``siim/`` (12 DICOMs); mri3d: 6 subjects with 1-2 sessions in a Clinica tree.
    """
    from camcontrast_monai.synthetic import write_chestxray14_dataset, write_mri_dataset, write_siim_dataset

    def write(folder: Path, modality: str) -> Path:
        if modality == "fundus":
            write_tiny_fundus(folder, n_downstream=20)
        elif modality == "cxr":
            write_chestxray14_dataset(folder / "chestxray14", n=24, seed=0, image_size=64, progress=False)
            write_siim_dataset(folder / "siim", n=12, seed=0, image_size=32, progress=False)
        else:
            write_mri_dataset(folder, n_subjects=6, seed=0, max_sessions=2)
        return folder

    return write


@pytest.fixture(scope="session")
def fundus_dataset_dir(tmp_path_factory) -> Path:
    """The fundus bundle's ``dataset_dir`` at test size, written once per session: ``pretrain/`` (16
    ODIR-style images, seed 0) and ``downstream/`` (15 IDRiD-style images, seed 1), 64 px. The bundle
    only reads it (every run writes under its own ``output_dir``), so tests share it."""
    return write_tiny_fundus(tmp_path_factory.mktemp("fundus_dataset"), n_downstream=15)
