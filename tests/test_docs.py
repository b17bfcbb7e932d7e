"""Every command of the README, the user guide and the bundle READMEs runs, at tiny sizes, so the docs cannot drift.

Each doc's ```bash blocks run through bash with ``python``, ``camcontrast``, ``torchrun``, ``cd``,
``pip``, ``pytest`` and ``mlflow`` replaced by recorders, so bash does the quoting, variables, functions and
loops; the recorded commands then run here, in order, in one sandbox per doc:

- ``python -m monai.bundle run|verify_metadata|verify_net_in_out|ckpt_export`` runs in-process as
  MONAI's CLI would (fire parses the values), with :data:`TINY` sizes under the doc's own overrides;
  ``torchrun`` runs the same command as a one-process gloo group; a loop's repeats over learning
  rates and folds (:data:`LOOPED`) run once;
- ``camcontrast synth|check-data|bundle`` run through the real CLI with small ``--n``;
- ``camcontrast demo``, ``camcontrast bench ...`` and ``camcontrast probe`` (minutes each or reading a finished
  demo's runs; covered by their own tests and by CI's ``demo --quick`` runs) are checked against the CLI's
  signature: every flag must exist;
- a command whose arguments are elided with ``...`` is a sketch and is skipped;
- ``pip install`` and ``pytest`` (what CI runs itself) and ``mlflow ui`` (a server) are skipped;
- ```python blocks run with ``exec`` in the same sandbox.

Placeholders (``DATA``, ``DIR``, ``/path/to/data``) and full sizes (``--n 2000``, ``width=64``)
are replaced by :data:`PLACEHOLDERS`; the tiny data sets come from the package's own generators.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import fire
import pytest

from camcontrast_monai.apps import cli
from camcontrast_monai.apps.bundle import export_bundle

REPO = Path(__file__).resolve().parents[1]
DOCS = {
    "README.md": "fundus",
    "docs/user-guide.md": "fundus",
    "bundles/camcontrast_fundus/docs/README.md": "fundus",
    "bundles/camcontrast_cxr/docs/README.md": "cxr",
    "bundles/camcontrast_mri3d/docs/README.md": "mri3d",
}
# sizes a doc command leaves at the paper's values; a doc's own value wins unless the key is in FORCED
TINY = {
    "fundus": {"width": 2, "image_size": 64, "crop_size": 48, "num_workers": 0},
    "cxr": {"width": 2, "image_size": 64, "crop_size": 32, "num_workers": 0},
    "mri3d": {"width": 2, "resnet_depth": 10, "volume_size": [32, 40, 32], "n_folds": 2, "holdout_fraction": 0.34, "num_workers": 0},
}
FORCED = {
    "stage1_epochs": 1, "stage1_batch_size": 4, "stage1_val_fraction": 0.25, "pretrain_epochs": 1, "pretrain_batch_size": 10,
    "finetune_epochs": 1, "finetune_batch_size": 4, "inference_batch_size": 2, "device": "$torch.device('cpu')",
}  # fmt: skip
# a documented grid over these runs once per remaining setting
LOOPED = {"finetune_lr", "fold"}
# the tiny sets are too small for the papers' low-label fractions (1 % of 24 images is none)
MIN_LABEL_FRACTION = 0.5
PLACEHOLDERS = [
    (r"/data/ODIR/ODIR-5K_Training_Annotations\.xlsx", "$DATA/pretrain/odir_annotations.csv"),
    (r"/data/ODIR/Training_Images", "$DATA/pretrain/images"),
    (r"/path/to/data", "$DATA"),
    (r"(?<!\$)\bDATA\b", "$DATA"),
    (r"(?<!\$)\bDIR\b", "$DIR"),
    (r"/tmp/", "$SANDBOX/tmp/"),
    (r"--n 2000\b", "--n 24"),
    (r"--n 400\b", "--n 24"),
    (r"--n 60\b", "--n 6"),
    (r"width=64", "width=2"),
    (r"\(64, 128, 256, 512, 1024, 64\)", "(2, 4, 8, 16, 32, 2)"),
]
RECORDERS = """
record() { printf '@@ %s\\n' "$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@")"; }
python() { record python "$@"; }
camcontrast() { record camcontrast "$@"; }
torchrun() { record torchrun "$@"; }
pip() { record pip "$@"; }
pytest() { record pytest "$@"; }
mlflow() { record mlflow "$@"; }
cd() { record cd "$@"; }
"""


def blocks(doc: str) -> list[tuple[str, str]]:
    """The doc's (language, text) code blocks that are commands: bash and python."""
    text = (REPO / doc).read_text()
    return [(lang, body) for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if lang in ("bash", "python")]


def substitute(text: str) -> str:
    for pattern, replacement in PLACEHOLDERS:
        text = re.sub(pattern, replacement, text)
    return text


def recorded_commands(script: str, env: dict[str, str]) -> list[list[str]]:
    """The argv of every command the bash ``script`` runs, expanded by bash itself."""
    ran = subprocess.run(["bash", "-c", RECORDERS + script], capture_output=True, text=True, env=env, timeout=60)
    assert ran.returncode == 0, ran.stderr
    return [json.loads(line[3:]) for line in ran.stdout.splitlines() if line.startswith("@@ ")]


def fire_kwargs(args: list[str]) -> tuple[list, dict]:
    """Positional and ``--key value`` / ``--key=value`` arguments, values parsed as fire parses them."""
    positional, kwargs, index = [], {}, 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            if not value:
                index += 1
                value = args[index]
            kwargs[key.replace("-", "_")] = fire.parser.DefaultParseValue(value)
        else:
            positional.append(fire.parser.DefaultParseValue(arg))
        index += 1
    return positional, kwargs


@contextlib.contextmanager
def working_directory(path: Path):
    """``contextlib.chdir`` of Python 3.11, for 3.10 too."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class Sandbox:
    """Runs the recorded commands of one doc: the working folder, the tiny sizes and the runs done."""

    def __init__(self, root: Path, modality: str, one_process_group) -> None:
        self.root, self.modality, self.cwd = root, modality, root
        self.one_process_group = one_process_group
        self.done: set[tuple] = set()
        self.ran: list[str] = []

    def run(self, argv: list[str]) -> None:
        name, args = argv[0], argv[1:]
        if "..." in args:
            return  # a sketch with its arguments elided ("torchrun --nnodes=2 ... run ...")
        if name == "cd":
            self.cwd = (self.cwd / os.path.expanduser(args[0])).resolve()
        elif name in ("pip", "mlflow", "pytest"):
            return
        elif name == "camcontrast":
            self.camcontrast(args)
        elif name == "python" and args[:2] == ["-m", "monai.bundle"]:
            self.monai_bundle(args[2], args[3:])
        elif name == "torchrun":
            module = args.index("-m")
            with self.one_process_group():
                self.monai_bundle(args[module + 2], args[module + 3 :])
        else:
            raise AssertionError(f"the docs run a command this test does not know: {shlex.join(argv)}")
        self.ran.append(shlex.join(argv))

    def camcontrast(self, args: list[str]) -> None:
        if args[0] in ("demo", "bench", "probe"):
            # these read a finished demo's runs or take minutes: their own tests run them
            command = getattr(cli.Bench(), args[1]) if args[0] == "bench" else getattr(cli.CLI(), args[0])
            parameters = inspect.signature(command).parameters
            _, kwargs = fire_kwargs(args[2 if args[0] == "bench" else 1 :])
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):  # **overrides: any key
                missing = sorted(set(kwargs) - set(parameters))
                assert not missing, f"camcontrast {' '.join(args[:2])}: no such flag {missing}"
            return
        with working_directory(self.cwd):
            try:
                fire.Fire(cli.CLI(), command=args, name="camcontrast")
            except SystemExit as done:  # check-data exits with its status
                assert done.code in (0, None), f"camcontrast {shlex.join(args)} exited with {done.code}"

    def monai_bundle(self, command: str, args: list[str]) -> None:
        import monai.bundle

        positional, kwargs = fire_kwargs(args)
        if command == "run":
            key = (str(self.cwd), repr(sorted((k, repr(v)) for k, v in kwargs.items() if k not in LOOPED)))
            if key in self.done:
                return  # a loop's repeat over learning rates or folds
            self.done.add(key)
            kwargs = {**TINY[self.modality], **kwargs, **FORCED}
            if "label_fraction" in kwargs:
                kwargs["label_fraction"] = max(kwargs["label_fraction"], MIN_LABEL_FRACTION)
        elif command in ("verify_net_in_out", "ckpt_export"):
            kwargs = {**kwargs, "width": 2}
            if command == "verify_net_in_out":  # 16 x width output channels at the reduced width
                kwargs["_meta_#network_data_format#outputs#pred#num_channels"] = 32
        with working_directory(self.cwd):
            getattr(monai.bundle, command)(*positional, **kwargs)


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_documented_command_runs(doc, tmp_path, restore_logging, monkeypatch, one_process_group, tiny_data):
    modality = DOCS[doc]
    data = tiny_data(tmp_path / "data", modality)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    env = {**os.environ, "DATA": str(data), "DIR": str(tmp_path / "dir"), "SANDBOX": str(tmp_path)}
    sandbox = Sandbox(tmp_path, modality, one_process_group)
    if doc.startswith("bundles/"):  # a bundle's README runs inside the bundle folder: DIR/<bundle>, exported
        sandbox.cwd = export_bundle(modality, env["DIR"])
    for lang, body in blocks(doc):
        body = substitute(body)
        if lang == "python":
            for name in ("DATA", "DIR", "SANDBOX"):
                body = body.replace(f"${name}", env[name])
            with working_directory(sandbox.cwd):
                exec(compile(body, f"{doc} python block", "exec"), {"__name__": "__docs__"})
            continue
        for argv in recorded_commands(body, env):
            sandbox.run([os.path.expandvars(a) for a in argv])
    assert sandbox.ran, f"{doc} has no command"
