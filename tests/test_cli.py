"""True command-line runs, as a user types them (the rest of the suite runs in-process)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_console_script_writes_a_synthetic_dataset(tmp_path):
    script = Path(sys.executable).parent / "camcontrast"
    assert script.is_file(), "pip install -e . installs the `camcontrast` console script beside python"
    result = run([str(script), "synth", "fundus", "--out", "data", "--n", "4", "--seed", "7"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 4 images" in result.stdout
    assert sorted(p.name for p in (tmp_path / "data" / "images").iterdir()) == ["0_left.png", "0_right.png", "1_left.png", "1_right.png"]


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_writes_the_report(tmp_path):
    result = run([sys.executable, "-m", "camcontrast_monai.apps.cli", "demo", "--quick", "--out", "out"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = tmp_path / "out" / "report"
    assert f"report written to {report / 'README.md'}" in result.stdout
    assert "[10/10] report" in result.stdout
    for picture in ("heatmaps.png", "curves.png", "downstream.png", "probes.png"):
        assert (report / picture).stat().st_size > 10_000
    metrics = json.loads((report / "metrics.json").read_text())
    # the report leads with the frozen probes of three encoders over 20 shared splits
    probes = metrics["probes"]
    assert probes["images"] == 40 and probes["n_splits"] == 20
    assert set(probes["results"]["DR grade"]["linear"]) == {"camcontrast", "random", "stage 1"}
    assert all(len(scores) == 20 for scores in probes["results"]["DME risk"]["knn"].values())
    text = (report / "README.md").read_text()
    assert text.index("With a linear probe of frozen features, camcontrast is") < text.index("## Fine-tuning")
    assert {row["task"] for row in metrics["downstream"]} == {"grading", "lesions"}
    assert {row["init"] for row in metrics["downstream"]} == {"random", "camcontrast"}
    quality = metrics["stage1_quality"]
    assert quality["held_out_images"] == 8 and 0.0 <= quality["stage1_auc"] <= 1.0
    assert (tmp_path / "out" / "models" / "model.pt").is_file()


def test_monai_bundle_run_from_the_shell(tmp_path):
    from camcontrast_monai.synthetic import write_fundus_dataset

    write_fundus_dataset(tmp_path / "data" / "pretrain", n=8, seed=0, image_size=64)
    bundle = REPO / "bundles" / "camcontrast_fundus"
    result = run(
        [
            sys.executable, "-m", "monai.bundle", "run",
            "--config_file", "['configs/common.json','configs/stage1.json']",
            "--bundle_root", ".", "--dataset_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "runs"),
            "--image_size", "32", "--width", "2", "--num_workers", "0",
            "--stage1_val_fraction", "0.25", "--train#trainer#max_epochs", "1", "--stage1_batch_size", "2",
        ],
        bundle,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "stage1" / "classifier.pt").is_file()
    history = json.loads((tmp_path / "runs" / "stage1" / "val_history.json").read_text())
    assert [epoch for epoch, _ in history["val_auc"]] == [1]
