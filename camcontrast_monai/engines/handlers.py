"""Ignite handlers the bundles attach to every long run: progress, loss history, resumable checkpoints."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from ignite.handlers import ProgressBar as IgniteProgressBar

from camcontrast_monai.io import atomic_path

__all__ = ["History", "ProgressBar", "ResumableCheckpoint", "latest_checkpoint"]

logger = logging.getLogger(__name__)


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, (int, float)):
        return float(value)
    return None


class ProgressBar:
    """A tqdm progress bar per epoch showing the named scalar outputs (e.g. the loss) of each iteration."""

    def __init__(self, output_keys: Sequence[str] = ("loss",), desc: str | None = None) -> None:
        self.output_keys = tuple(output_keys)
        self.desc = desc

    def _select(self, output: Any) -> dict[str, float]:
        if not isinstance(output, Mapping):
            return {}
        values = {key: _scalar(output.get(key)) for key in self.output_keys}
        return {key: value for key, value in values.items() if value is not None}

    def attach(self, engine: Engine) -> None:
        bar = IgniteProgressBar(persist=True, desc=self.desc) if self.desc else IgniteProgressBar(persist=True)
        bar.attach(engine, output_transform=self._select)


class History:
    """Records scalars during a run and writes them as JSON after each epoch, for loss/metric curves.

    ``source="output"`` records the named scalar outputs of every iteration (e.g. ``loss``) keyed by
    iteration; ``source="metrics"`` records the named ``engine.state.metrics`` (e.g. ``val_auc``) at the
    end of every epoch keyed by epoch (for an evaluator run by MONAI's ``ValidationHandler``, the
    trainer's epoch). The file maps each key to a list of ``[step, value]`` pairs, so report code can
    plot curves without reading TensorBoard event files. A resumed run keeps the history up to the
    step it resumes from and drops the rest (those steps are redone).
    """

    def __init__(self, path: str, keys: Sequence[str] = ("loss",), source: str = "output") -> None:
        if source not in ("output", "metrics"):
            raise ValueError(f"source must be 'output' or 'metrics', got {source!r}")
        self.path = Path(path)
        self.keys = tuple(keys)
        self.source = source
        self.history: dict[str, list[list[float]]] = {key: [] for key in self.keys}
        self._loaded = False

    def attach(self, engine: Engine) -> None:
        if self.source == "output":
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._record)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)
        else:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._record)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _step(self, engine: Engine) -> int:
        return engine.state.iteration if self.source == "output" else engine.state.epoch

    def _values(self, engine: Engine) -> Mapping[str, Any]:
        values = engine.state.output if self.source == "output" else engine.state.metrics
        return values if isinstance(values, Mapping) else {}

    def _load_previous(self, step: int) -> None:
        # the first record after a resume: keep what the interrupted run wrote before this step
        self._loaded = True
        if self.path.exists():
            previous = json.loads(self.path.read_text())
            for key in self.keys:
                self.history[key] = [entry for entry in previous.get(key, []) if entry[0] < step]

    def _record(self, engine: Engine) -> None:
        step = self._step(engine)
        if not self._loaded:
            self._load_previous(step)
        values = self._values(engine)
        for key in self.keys:
            value = _scalar(values.get(key))
            if value is not None:
                self.history[key].append([step, value])
        if self.source == "metrics":
            self.write()

    def write(self, engine: Engine | None = None) -> None:
        with atomic_path(self.path) as temporary:
            temporary.write_text(json.dumps(self.history))


_STEP = re.compile(r"_(\d+)\.pt$")


def latest_checkpoint(save_dir: str | Path) -> Path | None:
    """The checkpoint ``checkpoint_<iteration>.pt`` with the highest iteration in ``save_dir``, or None."""
    candidates = []
    for path in Path(save_dir).glob("checkpoint_*.pt"):
        match = _STEP.search(path.name)
        if match:
            candidates.append((int(match.group(1)), path))
    return max(candidates)[1] if candidates else None


class ResumableCheckpoint:
    """Saves the run's state every ``save_interval`` epochs and resumes from the newest save when attached.

    ``save_dict`` names the objects to save and restore (network, optimizer, lr scheduler); the engine
    it is attached to is added as ``"trainer"`` (so its epoch and iteration are restored, and a bundle
    config needs no reference from the trainer's handlers back to the trainer). Files are ``checkpoint_{iteration}.pt`` in ``save_dir``, written atomically
    (temporary file + rename: MONAI 1.6.1's CheckpointSaver writes in place), keeping the newest
    ``n_saved``. Loading uses ``weights_only=True``. The trainer's ``max_epochs`` is kept from the
    configuration, so a finished run can be extended by raising it.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: Mapping[str, Any],
        save_interval: int = 1,
        n_saved: int = 1,
        resume: bool = True,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.save_interval = save_interval
        self.n_saved = n_saved
        self.resume = resume

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        saver = Checkpoint(
            self.save_dict,
            DiskSaver(str(self.save_dir), require_empty=False, atomic=True, create_dir=True),
            n_saved=self.n_saved,
            global_step_transform=lambda trainer, _: trainer.state.iteration,
        )
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), saver)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self._remove_stale)
        if self.resume:
            engine.add_event_handler(Events.STARTED, self._resume)

    def _remove_stale(self, engine: Engine) -> None:
        # ignite prunes only the files this process saved; an earlier, resumed run left its own
        saved = sorted(Path(self.save_dir).glob("checkpoint_*.pt"), key=lambda p: int(_STEP.search(p.name).group(1)))
        for path in saved[: -self.n_saved]:
            path.unlink(missing_ok=True)

    def _resume(self, engine: Engine) -> None:
        path = latest_checkpoint(self.save_dir)
        if path is None:
            logger.info("no checkpoint in %s: starting from scratch", self.save_dir)
            return
        configured_max_epochs = engine.state.max_epochs
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        Checkpoint.load_objects(to_load=self.save_dict, checkpoint=checkpoint)
        engine.state.max_epochs = configured_max_epochs
        logger.info("resumed from %s at epoch %d, iteration %d", path, engine.state.epoch, engine.state.iteration)
