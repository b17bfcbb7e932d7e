"""The demo driver with the chest X-ray and MRI settings at their quick sizes, in this process (the fundus
setting runs as a true CLI command in test_cli.py)."""

import json

import pytest

from camcontrast_monai.apps.demo.driver import SETTINGS, BundleRun, run_demo


def test_every_setting_has_a_stage1_run_first_and_a_run_for_each_init():
    import importlib

    for name in SETTINGS:
        setting = importlib.import_module(f"camcontrast_monai.apps.demo.{name}").SETTING
        for plan in (setting.full, setting.quick):
            pretraining, downstream = setting.pretraining_runs(plan), setting.downstream_runs(plan)
            assert [run.name for run in pretraining][:1] == ["stage1"]
            assert [run.configs for run in pretraining] == [("stage1.json",), ("heatmaps.json",), ("pretrain.json",)]
            assert all(isinstance(run, BundleRun) for run in downstream)
            inits = [run.overrides["init"] for run in downstream if "init" in run.overrides]
            assert inits.count("random") == inits.count("camcontrast") > 0


def test_the_gpu_preset_is_the_fundus_setting_at_the_papers_width_and_crop_in_bf16():
    from camcontrast_monai.apps.demo.driver import demo_plan, demo_setting

    fundus = demo_setting("fundus")
    plan = demo_plan(fundus, "gpu")
    assert plan.width == 64 and plan.image_size // 2 == 224 and plan.pretrain_batch_size == 120
    assert plan.precision_overrides == {"autocast_dtype": "auto", "channels_last": True}
    assert plan.source_scale == 1 and fundus.full.source_scale == 2
    # the CPU plans leave the bundle's precision alone
    assert fundus.full.precision_overrides == {} and demo_plan(fundus, "quick") is fundus.quick
    with pytest.raises(SystemExit, match="no preset 'gpu'; choose one of \\['full', 'quick'\\]"):
        demo_plan(demo_setting("cxr"), "gpu")


def test_an_unknown_setting_is_refused_by_name():
    with pytest.raises(SystemExit, match="unknown demo bundle 'ct'"):
        run_demo(bundle="ct")


@pytest.mark.parametrize(
    ("bundle", "steps", "sections"),
    [
        ("cxr", 12, ["## Stage 1 (coarse labels)", "## Multilabel stage 1", "## Downstream (test split)"]),
        ("mri3d", 10, ["## Transfer to CN / MCI / AD (Table 11 layout)", "## Stage 1 and heatmaps"]),
    ],
)
def test_quick_demo_of_a_setting_writes_its_report(tmp_path, capsys, bundle, steps, sections):
    report = run_demo(out=str(tmp_path / "out"), quick=True, num_workers=0, bundle=bundle)
    printed = capsys.readouterr().out
    assert f"[{steps}/{steps}] report" in printed
    text = (report / "README.md").read_text()
    # the driver's frame: the setting's title, the probe verdict first, the stage-2 loss, the setting's
    # sections, and the training curves last
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Frozen-feature probes" and headings[-1] == "## Training curves"
    lead = ["**With a linear probe of frozen features, camcontrast is", "## Stage 2: how far the loss got", *sections]
    positions = [text.index(part) for part in lead]
    assert positions == sorted(positions)
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["plan"]["pretrain_epochs"] == 1 and metrics["seed"] == 0
    assert set(metrics["probes"]["results"][next(iter(metrics["probes"]["results"]))]["linear"]) == {
        "camcontrast", "random", "stage 1",
    }  # fmt: skip
    assert metrics["stage2_loss"]["collapsed"] > metrics["stage2_loss"]["floor"]
    for picture in ("curves.png", "probes.png"):
        assert (report / picture).stat().st_size > 10_000
    if bundle == "cxr":
        assert {row["task"] for row in metrics["downstream"]} == {"chestxray14", "pneumothorax"}
        assert (tmp_path / "out" / "runs" / "multilabel" / "stage1" / "classifier.pt").is_file()
        assert metrics["multilabel_stage1_quality"]
    else:
        assert metrics["cohort"]["n_subjects"] == 20
        assert {row["method"] for row in metrics["crossval"]} >= {"random", "camcontrast"}
