"""Imports only point down: utils <- networks <- losses, transforms, metrics <- data <- synthetic, engines <- report <- apps.

Every module lives in one of these folders; the package root holds only ``__init__.py``.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "camcontrast_monai"
LAYERS = {
    "utils": 0, "networks": 1, "losses": 2, "transforms": 2, "metrics": 2, "data": 3, "synthetic": 4, "engines": 4,
    "report": 5, "apps": 6,
}  # fmt: skip


def layer(parts: list[str]) -> int | None:
    """The layer of ``camcontrast_monai.<parts>``; None for the package itself."""
    if not parts or parts[0] == "__init__":
        return None
    return LAYERS[parts[0]]


def upward_imports(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        own = layer(list(path.relative_to(package).with_suffix("").parts))
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                name, *parts = module.split(".")
                target = layer(parts) if name == package.name else None
                if target is not None and target > own:
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno} imports {module} from a layer above")
    return found


def test_every_module_is_in_a_layer_folder():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules at the package root, outside every layer: {loose}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(LAYERS), f"package folders without a layer: {sorted(folders - set(LAYERS))}"


def test_imports_only_point_down():
    upward = upward_imports()
    assert not upward, "\n".join(upward)


def test_an_upward_import_is_found(tmp_path):
    package = tmp_path / "camcontrast_monai"
    (package / "losses").mkdir(parents=True)
    (package / "losses" / "loss.py").write_text("import torch\nfrom camcontrast_monai.utils import as_switch\nfrom camcontrast_monai.engines import x\n")
    assert upward_imports(package) == ["camcontrast_monai/losses/loss.py:3 imports camcontrast_monai.engines from a layer above"]


def cross_module_private_imports(package: Path = PACKAGE) -> list[str]:
    """``from camcontrast_monai.x import _name``: a private name used outside its module."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(package.name):
                found += [f"{path.relative_to(package.parent)}:{node.lineno} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


def test_no_private_name_crosses_a_module_and_no_mock_in_the_package():
    private = cross_module_private_imports()
    assert not private, "give what is shared a public name:\n" + "\n".join(private)
    mocking = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if "unittest.mock" in p.read_text() or "from unittest import mock" in p.read_text()]
    assert not mocking, mocking


def test_a_private_import_is_found(tmp_path):
    package = tmp_path / "camcontrast_monai"
    package.mkdir()
    (package / "app.py").write_text("from camcontrast_monai.apps.bench.step import _helper, public\n")
    assert cross_module_private_imports(package) == ["camcontrast_monai/app.py:1 imports camcontrast_monai.apps.bench.step._helper"]
