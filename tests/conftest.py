"""Fixtures shared by the test files."""

import logging
import socket
import sys
from pathlib import Path

import monai.apps.utils
import monai.bundle.scripts
import pytest


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
