"""Ignite handlers the bundles attach to every long run: progress, loss history, resumable checkpoints,
per-epoch seeding (so a resumed run repeats an uninterrupted one)."""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from ignite.handlers import ProgressBar as IgniteProgressBar
from monai.data.utils import set_rnd
from monai.utils import set_determinism

from camcontrast_monai.utils.io import atomic_path

__all__ = ["EncoderSnapshots", "EpochSeeding", "History", "ProgressBar", "ResumableCheckpoint", "latest_checkpoint"]

logger = logging.getLogger(__name__)


def batch_values(output: Any) -> Mapping[str, Any]:
    """The per-batch values of an engine output: the dict itself, or the first item of a decollated list.

    Decollation (MONAI's default) copies a batch's scalars, such as the loss, into every item.
    """
    if isinstance(output, Sequence) and output and isinstance(output[0], Mapping):
        return output[0]
    return output if isinstance(output, Mapping) else {}


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
        values = {key: _scalar(batch_values(output).get(key)) for key in self.output_keys}
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
        return batch_values(engine.state.output if self.source == "output" else engine.state.metrics)

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
        if not self._loaded and engine is not None:
            # nothing recorded yet in this process (a rerun of a finished run resumes at its last
            # step and runs no iteration): keep what is on disk up to the current step
            self._load_previous(self._step(engine) + 1)
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

    Crash safety (a ``kill -9`` at any instant loses at most the epochs since the last save):

    - the save is the last epoch-end handler of the run: it is registered when the run starts, after
      every handler attached before ``run()`` (LR scheduler step, validation, history writes), so the
      saved scheduler state is the stepped one and everything the epoch writes is on disk before the
      epoch counts as done. A kill before the save redoes the whole epoch (validation included); a kill
      after it loses nothing.
    - the new file is complete (renamed into place) before older ones are deleted: ignite's
      ``Checkpoint`` deletes the previous file first, which would leave no checkpoint at all after a
      kill during the save, so pruning is done here, after the save.
    - temporaries a killed save left behind (ignite's ``tmp*`` files) never match ``checkpoint_*.pt``,
      so no run trusts them; they are deleted when the next run starts.

    Not covered: power loss or an OS crash (the file is renamed, not fsync'ed).
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: Mapping[str, Any],
        save_interval: int = 1,
        n_saved: int | None = 1,
        resume: bool = True,
    ) -> None:
        if n_saved is not None and n_saved < 1:
            raise ValueError(f"n_saved must be at least 1 (or None: keep every checkpoint), got {n_saved}")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.save_interval = save_interval
        self.n_saved = n_saved
        self.resume = resume
        self._attached_to: set[int] = set()

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        if self.resume:
            engine.add_event_handler(Events.STARTED, self._resume)
        engine.add_event_handler(Events.STARTED, self._attach_saver)

    def _attach_saver(self, engine: Engine) -> None:
        # at STARTED, so the save comes after every epoch-end handler attached before run()
        if id(engine) in self._attached_to:
            return
        self._attached_to.add(id(engine))
        saver = Checkpoint(
            self.save_dict,
            DiskSaver(str(self.save_dir), require_empty=False, atomic=True, create_dir=True),
            n_saved=None,  # ignite would delete the old file before writing the new one: _remove_stale prunes
            global_step_transform=lambda trainer, _: trainer.state.iteration,
        )
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), saver)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self._remove_stale)

    def _remove_stale(self, engine: Engine) -> None:
        # only after the newest file is in place; ignite's own pruning also misses files an earlier run left
        if self.n_saved is None:
            return
        saved = sorted(Path(self.save_dir).glob("checkpoint_*.pt"), key=lambda p: int(_STEP.search(p.name).group(1)))
        for path in saved[: -self.n_saved]:
            path.unlink(missing_ok=True)

    def _remove_temporaries(self) -> None:
        # ignite's atomic DiskSaver writes tempfile.NamedTemporaryFile(dir=save_dir) = "tmp<random>"
        if not self.save_dir.is_dir():
            return
        for path in self.save_dir.glob("tmp*"):
            if path.is_file() and not _STEP.search(path.name):
                logger.info("removing %s, the temporary of a save that was interrupted", path)
                path.unlink(missing_ok=True)

    def _resume(self, engine: Engine) -> None:
        self._remove_temporaries()
        path = latest_checkpoint(self.save_dir)
        if path is None:
            logger.info("no checkpoint in %s: starting from scratch", self.save_dir)
            return
        configured_max_epochs = engine.state.max_epochs
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"refused to load {path}: it holds objects other than tensors and plain values, which "
                "weights_only loading never unpickles (a checkpoint from an untrusted source?)"
            ) from error
        missing = sorted(set(self.save_dict) - set(checkpoint)) if isinstance(checkpoint, Mapping) else []
        if missing:
            raise ValueError(
                f"{path} holds no {missing}: it was written with another save_dict (an older configuration?); "
                "move the checkpoints folder away to start this run over"
            )
        try:
            Checkpoint.load_objects(to_load=self.save_dict, checkpoint=checkpoint)
        except RuntimeError as error:  # a state dict of another network shape
            raise ValueError(
                f"{path} does not fit this run's network ({str(error).splitlines()[0]} ...): it was written by a "
                f"run with other settings in {self.save_dir}; give this run another output_dir, or move the "
                "checkpoints folder away to start it over"
            ) from error
        engine.state.max_epochs = configured_max_epochs
        logger.info("resumed from %s at epoch %d, iteration %d", path, engine.state.epoch, engine.state.iteration)


class EpochSeeding:
    """Reseeds every random number generator an epoch consumes from ``(seed, epoch)`` alone.

    ``monai.utils.set_determinism`` once at start makes a run repeatable only from its first epoch:
    the random state at epoch ``k`` depends on everything the process did before (shuffling, random
    transforms, worker seeds, validation loaders), so a run resumed at epoch ``k`` from a checkpoint
    would see other batches and other augmentations than the uninterrupted run. This handler, at
    every ``EPOCH_STARTED`` of the trainer, sets from a seed derived from ``(seed, epoch)``:

    - torch's, numpy's and Python's global generators (``set_determinism``, which also sets
      ``cudnn.deterministic=True, cudnn.benchmark=False``). The shuffle order is drawn from torch's
      generator when the epoch's data iterator is created, and ignite creates it after
      ``EPOCH_STARTED`` (``Engine._internal_run_as_gen``: epoch 1 in ``_setup_engine``, later epochs
      when the previous iterator is exhausted inside ``_run_once_on_dataset_as_gen``);
    - the random state of every MONAI ``Randomizable`` transform in ``data_loader.dataset``, found by
      MONAI's own walker ``monai.data.utils.set_rnd`` (what MONAI's ``DataLoader`` does once at
      construction): ``dataset.transform``, ``FixedCropDataset.crop_transform``, nested ``Compose``;
    - ``data_loader.generator`` and its sampler's generator, where one was given.

    Worker processes (``num_workers > 0``) are created per epoch; MONAI's ``DataLoader`` seeds their
    transforms with ``worker_init_fn`` from the worker seed, which torch draws from the generator just
    reseeded, so each epoch is deterministic with workers too. ``persistent_workers=True`` keeps
    workers, and their transform states, across epochs: that breaks it (a warning is logged).

    ``data_loader`` defaults to the engine's own data (``engine.state.dataloader``). Attach it to the
    trainer only (an evaluator's epochs are numbered by the trainer's).
    """

    def __init__(self, seed: int, data_loader: Any = None) -> None:
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.seed = seed
        self.data_loader = data_loader

    def attach(self, engine: Engine) -> None:
        loader = self.data_loader
        if getattr(loader, "persistent_workers", False) and getattr(loader, "num_workers", 0) > 0:
            logger.warning(
                "persistent_workers=True: workers keep their transform random state across epochs, "
                "so a resumed run will not repeat the augmentations of an uninterrupted one"
            )
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def epoch_seeds(self, epoch: int) -> tuple[int, int]:
        """The seeds of ``epoch``: one for torch/numpy/random, one for the dataset's transforms."""
        seeds = np.random.SeedSequence([self.seed, int(epoch)]).generate_state(2, dtype=np.uint32)
        return int(seeds[0]), int(seeds[1])

    def __call__(self, engine: Engine) -> None:
        global_seed, transform_seed = self.epoch_seeds(engine.state.epoch)
        set_determinism(seed=global_seed)
        loader = self.data_loader if self.data_loader is not None else engine.state.dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is not None:
            set_rnd(dataset, seed=transform_seed)
        # a generator given to the loader (or its sampler) shuffles instead of torch's global one
        sampler = getattr(loader, "sampler", None)
        generators = (getattr(loader, "generator", None), getattr(sampler, "generator", None))
        for generator in {id(g): g for g in generators if isinstance(g, torch.Generator)}.values():
            generator.manual_seed(global_seed)


class EncoderSnapshots:
    """Saves ``module.state_dict()`` as ``save_dir/epoch{N}.pt`` at the end of each epoch listed in ``epochs``.

    Stage 2's learning-rate schedule spans the whole run, so a snapshot at epoch ``N`` of a long run is
    not the encoder that a run of ``N`` epochs would give; it shows how the representation grows along
    one schedule, which is what choosing a schedule needs (probe each snapshot). Files are written
    atomically, in the plain state-dict form the downstream configs load.
    """

    def __init__(self, module: torch.nn.Module, epochs: Sequence[int], save_dir: str | Path) -> None:
        self.module = module
        self.epochs = sorted({int(epoch) for epoch in epochs})
        if any(epoch < 1 for epoch in self.epochs):
            raise ValueError(f"snapshot epochs count from 1, got {list(epochs)}")
        self.save_dir = Path(save_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch not in self.epochs:
            return
        with atomic_path(self.save_dir / f"epoch{engine.state.epoch}.pt") as temporary:
            torch.save(self.module.state_dict(), temporary)
