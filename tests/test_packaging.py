"""What a fresh machine gets: every import comes from a declared dependency, and the wheel carries the bundles.

A hand-installed package on a developer's machine (scipy, once) hides a missing declaration: the
suite passes there and both README commands fail on a new one. These tests read pyproject.toml
itself, so they fail on such a machine too.
"""

import ast
import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from camcontrast_monai.apps.bundle import (
    SHIPPED_FILES,
    bundle_names,
    bundle_path,
    bundles_dir,
    export_bundle,
    is_shipped,
)

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "camcontrast_monai"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def installed_closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` bring in, following each one's own unconditional requirements."""
    seen: set[str] = set()
    pending = [requirement_name(r) for r in requirements]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            pending += [requirement_name(r) for r in metadata.requires(name) or [] if "extra" not in r.partition(";")[2]]
        except metadata.PackageNotFoundError:
            pass  # declared but not installed here: any import of it fails on its own
    return seen


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Top-level module names of every absolute import in ``path``, with line numbers."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name.partition(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.module.partition(".")[0], node.lineno))
    return names


def undeclared_imports(folder: Path, declared: set[str], local: set[str], root: Path = REPO) -> list[str]:
    providers = {module: {canonical(d) for d in dists} for module, dists in metadata.packages_distributions().items()}
    problems = []
    for path in sorted(folder.rglob("*.py")):
        for module, line in imported_modules(path):
            if module in sys.stdlib_module_names or module in local or module == "__future__":
                continue
            if not providers.get(module, set()) & declared:
                where = f"{path.relative_to(root)}:{line}"
                problems.append(f"{where} imports {module}, which no declared dependency provides ({sorted(providers.get(module, [])) or 'not installed'})")
    return problems


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_package_and_scripts_import_only_declared_dependencies(project):
    declared = installed_closure(project["dependencies"])
    problems = undeclared_imports(REPO / PACKAGE, declared, {PACKAGE})
    problems += undeclared_imports(REPO / "scripts", declared, {PACKAGE})
    assert not problems, "\n".join(problems)


def test_tests_import_only_the_test_extra(project):
    declared = installed_closure(project["dependencies"] + project["optional-dependencies"]["test"])
    local = {PACKAGE} | {path.stem for path in (REPO / "tests").glob("*.py")}
    assert not undeclared_imports(REPO / "tests", declared, local)


def test_the_closure_follows_requirements_and_skips_extras():
    closure = installed_closure(["monai"])
    assert {"monai", "torch", "numpy"} <= closure  # monai requires torch and numpy
    assert "nibabel" not in closure  # only monai's [nibabel] extra asks for it


def test_an_undeclared_import_is_reported(tmp_path):
    (tmp_path / "module.py").write_text("import json\nimport numpy\nfrom torch import nn\n")
    assert undeclared_imports(tmp_path, {"numpy"}, set(), root=tmp_path) == [
        "module.py:3 imports torch, which no declared dependency provides (['torch'])"
    ]


def tracked_files(folder: str) -> set[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", folder], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0 or not listed.stdout:
        pytest.skip("not a git checkout: the shipped files are the files git tracks or would track")
    return set(listed.stdout.split())


def test_the_wheel_carries_every_module_and_every_bundle_file(tmp_path):
    pytest.importorskip("setuptools")
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the tracked files")
    # a copy of what a clean clone holds, so the build writes no build/ or egg-info into the checkout (copying the
    # whole checkout also copied the virtual environments in it: CI's .ci-venv, a developer's .venv)
    source, listed = tmp_path / "source", tracked_files(".")
    for name in listed:
        if not (REPO / name).is_file():
            continue  # deleted in this checkout but not yet in git
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    modules = {name for name in listed if name.startswith(f"{PACKAGE}/") and name.endswith(".py")}
    bundles = {f"{PACKAGE}/{name}" for name in listed if name.startswith("bundles/")}
    assert modules - shipped == set(), "add the missing packages to [tool.setuptools] packages in pyproject.toml"
    assert bundles - shipped == set(), "add the missing bundle files to [tool.setuptools.package-data]"
    assert f"{PACKAGE}/schemas/meta_schema.json" in shipped
    assert not [name for name in shipped if name.endswith((".pt", ".ts")) or "bundle_configs" in name]


def test_the_wheel_and_bundle_export_ship_the_same_bundle_files():
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert package_data["camcontrast_monai.bundles"] == [f"*/{pattern}" for pattern in SHIPPED_FILES]
    assert is_shipped(Path("configs/common.json")) and is_shipped(Path("models/.gitkeep"))
    assert not is_shipped(Path("models/model.pt")) and not is_shipped(Path("runs/stage1/classifier.pt"))
    assert not is_shipped(Path("configs/__pycache__/x.pyc")), "a glob's * stays within one folder"


def test_bundles_are_found_by_full_and_short_name():
    assert bundle_names() == ["camcontrast_cxr", "camcontrast_fundus", "camcontrast_mri3d"]
    assert bundle_path("mri3d") == bundle_path("camcontrast_mri3d") == bundles_dir() / "camcontrast_mri3d"
    with pytest.raises(ValueError, match="unknown bundle 'camcontrast_ct'.*camcontrast_cxr, camcontrast_fundus"):
        bundle_path("camcontrast_ct")


def test_export_copies_the_shipped_files_and_never_replaces_a_users_folder(tmp_path):
    target = export_bundle("cxr", tmp_path / "mine")
    assert target == tmp_path / "mine" / "camcontrast_cxr"
    shipped = {name.removeprefix("bundles/camcontrast_cxr/") for name in tracked_files("bundles/camcontrast_cxr")}
    shipped.add("eval/schema.json")  # the model zoo's place for the metadata schema
    assert (target / "eval" / "schema.json").read_bytes() == (REPO / "schemas" / "meta_schema.json").read_bytes()
    assert {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} == shipped

    (target / "models" / "model.pt").write_bytes(b"trained weights")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_bundle("cxr", tmp_path / "mine")
    assert (target / "models" / "model.pt").read_bytes() == b"trained weights"
    export_bundle("cxr", tmp_path / "mine", overwrite=True)
    assert not (target / "models" / "model.pt").exists()


def test_an_exported_bundle_resolves_its_paths_from_its_own_folder(tmp_path):
    from monai.bundle import ConfigParser

    target = export_bundle("fundus", tmp_path)
    parser = ConfigParser()
    parser.read_config([str(target / "configs" / "common.json"), str(target / "configs" / "stage1.json")])
    parser["bundle_root"] = str(target)
    assert parser.get_parsed_content("encoder_path") == f"{target}/models/model.pt"
    assert parser.get_parsed_content("output_dir") == f"{target}/runs"


def test_bundle_export_on_the_command_line(tmp_path):
    script = Path(sys.executable).parent / "camcontrast"
    exported = subprocess.run([str(script), "bundle", "export", "camcontrast_mri3d", "out"], cwd=tmp_path, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    assert f"exported camcontrast_mri3d to {tmp_path / 'out' / 'camcontrast_mri3d'}" in exported.stdout
    again = subprocess.run([str(script), "bundle", "export", "camcontrast_mri3d", "out"], cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 1 and "exists and is not empty" in again.stderr


def test_every_bundle_pins_the_package_version_it_needs():
    import camcontrast_monai

    for name in bundle_names():
        meta = json.loads((bundle_path(name) / "configs" / "metadata.json").read_text())
        assert meta["required_packages_version"]["camcontrast-monai"] == camcontrast_monai.__version__, name
        assert meta["version"] in meta["changelog"], name
    assert metadata.version("camcontrast-monai") == camcontrast_monai.__version__, "reinstall: pip install -e ."
