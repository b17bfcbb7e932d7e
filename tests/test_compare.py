"""The comparison runner: method specs, learning-rate selection by hand, and a resumable run on a tiny grid."""

import json
import math

import pytest

from camcontrast_monai.apps.compare import (
    ABLATIONS,
    MethodSpec,
    paired_differences,
    parse_method,
    power_check,
    run_compare,
    select_and_summarise,
)
from camcontrast_monai.apps.compare.plan import Grid
from camcontrast_monai.report.tables import write_json


def test_method_specs():
    assert parse_method("simclr-crop") == MethodSpec("simclr-crop", "simclr", True, {})
    assert parse_method("supcon") == MethodSpec("supcon", "supcon", False, {})
    spec = parse_method("camcontrast:no_attention:temperature=0.1:crop_strategy=four")
    assert spec.kind == "camcontrast" and not spec.fixed_crops
    assert spec.overrides == {**ABLATIONS["no_attention"], "temperature": 0.1, "crop_strategy": "four"}
    assert spec.slug == "camcontrast_no_attention_temperature_0.1_crop_strategy_four"
    assert parse_method("supce-crop:encoder_name=resnet34").finetune_overrides == {"encoder_name": "resnet34"}
    for bad, message in [("camcontrast-crop", "'-crop' variant"), ("byol", "unknown method"),
                         ("camcontrast:no_such", "unknown ablation"), ("random:temperature=0.1", "no pretraining")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_method(bad)


def _fake_run(out, task, method, lr, seed, val_history, test):
    run = out / "runs" / "finetune" / task / method / "fraction0.5" / f"lr{lr:g}" / f"seed{seed}"
    key = "val_joint_accuracy" if task == "grading" else "val_score"
    write_json({key: [[epoch + 1, value] for epoch, value in enumerate(val_history)]}, run / "val_history.json")
    write_json({"metrics": {"test_score": test}}, run / "test_metrics.json")


def test_learning_rate_is_chosen_on_mean_validation_and_test_is_reported_over_seeds(tmp_path):
    # lr 1e-3: best validation per seed 0.6, 0.5, 0.7 (mean 0.6); lr 3e-3: 0.5, 0.8, 0.65 (mean 0.65) -> 3e-3 wins
    for seed, (low, high) in enumerate([((0.2, 0.6), (0.5, 0.1)), ((0.5, 0.4), (0.8, 0.3)), ((0.7, 0.7), (0.6, 0.65))]):
        _fake_run(tmp_path, "grading", "supce-crop", 1e-3, seed, low, test=0.9)
        _fake_run(tmp_path, "grading", "supce-crop", 3e-3, seed, high, test=[0.4, 0.5, 0.9][seed])
    # a method with one seed missing at lr 3e-3: only the complete lr 1e-3 counts
    for seed in range(3):
        _fake_run(tmp_path, "grading", "random", 1e-3, seed, (0.1,), test=0.3)
    _fake_run(tmp_path, "grading", "random", 3e-3, 0, (0.9,), test=0.9)
    methods = [parse_method("supce-crop"), parse_method("random")]
    rows = select_and_summarise(tmp_path, methods, ["grading"], [0.5], [0, 1, 2], {"grading": (1e-3, 3e-3)})
    supce, random = rows
    assert supce["lr"] == 3e-3 and supce["val_by_lr"] == pytest.approx({"0.001": 0.6, "0.003": 0.65})
    assert supce["test_scores"] == [0.4, 0.5, 0.9]
    assert supce["mean"] == pytest.approx(0.6)
    assert supce["std"] == pytest.approx(math.sqrt(((0.2**2) + (0.1**2) + (0.3**2)) / 2))  # sample std
    assert random["lr"] == 1e-3 and random["mean"] == pytest.approx(0.3) and random["std"] == pytest.approx(0.0)


def test_power_check_and_paired_differences_by_hand():
    def row(method, task, scores):
        return {"method": method, "task": task, "fraction": 1.0, "test_scores": scores, "mean": sum(scores) / len(scores), "std": 0.0}

    # grading: random beats trivial by 0.2 on every seed; lesions: by 0.01, below the 0.05 margin
    power = power_check(
        [row("random", "grading", [0.6, 0.7, 0.8]), row("random", "lesions", [0.03, 0.04, 0.05])],
        {"grading": [0.4, 0.5, 0.6], "lesions": [0.02, 0.03, 0.04]},
    )
    assert [p["learnable"] for p in power] == ["yes", "NO"]
    assert power[0]["trivial predictor"] == pytest.approx(0.5)
    assert power[0]["random - trivial [95% interval]"] == "+0.200 [+0.200, +0.200]"
    grid = Grid([parse_method("random"), parse_method("camcontrast"), parse_method("supce-crop")], ["grading"], [1.0], [0, 1, 2])
    paired = paired_differences(
        [row("random", "grading", [0.5, 0.5, 0.5]), row("camcontrast", "grading", [0.7, 0.6, 0.8]),
         row("supce-crop", "grading", [0.8, 0.5, 0.9])], grid,
    )  # fmt: skip
    assert [p["camcontrast minus"] for p in paired] == ["random", "supce-crop"]
    assert paired[0]["difference [95% interval]"].startswith("+0.200") and paired[0]["verdict"] == "better"
    assert paired[1]["difference [95% interval]"] == "-0.033 [-0.100, +0.100]"
    assert paired[1]["verdict"] == "no difference shown" and paired[1]["seeds"] == 3


def test_runner_on_a_tiny_grid_writes_a_report_and_resumes(tmp_path, capsys):
    grid = {
        "out": str(tmp_path), "methods": "random,supce-crop", "tasks": "grading,glaucoma", "fractions": "1.0", "seeds": "0,1",
        "preset": "tiny", "num_workers": 0, "shared_pretraining": True,
    }  # fmt: skip
    report = run_compare(**grid)
    first = capsys.readouterr().out
    assert first.count("fine-tune grading") == first.count("fine-tune glaucoma") == 4  # 2 methods x 1 lr x 2 seeds
    assert "pretrain supce-crop seed 0" in first and "pretrain supce-crop seed 1" not in first  # pretrained once
    results = json.loads((report / "results.json").read_text())
    assert [(r["method"], r["task"], len(r["test_scores"])) for r in results["rows"]] == [
        ("random", "grading", 2), ("supce-crop", "grading", 2), ("random", "glaucoma", 2), ("supce-crop", "glaucoma", 2),
    ]  # fmt: skip
    # the power check reuses random init at 100 % labels; its trivial score is the training split's most
    # frequent (DR, DME) pair, scored on the same test split
    from camcontrast_monai.data import downstream_splits, read_idrid_grading

    downstream = tmp_path / "data" / "downstream"
    entries = read_idrid_grading(str(downstream / "idrid_grading.csv"), str(downstream / "images"))
    expected = []
    for seed in (0, 1):
        splits = downstream_splits([{**e, "label": (e["dr_grade"], e["dme_risk"])} for e in entries], seed=seed)
        pairs = [tuple(e["label"]) for e in splits["train"]]
        majority = max(sorted(set(pairs)), key=pairs.count)
        expected.append(sum(tuple(e["label"]) == majority for e in splits["test"]) / len(splits["test"]))
    # glaucoma: the best constant on the training split's F1 is "all glaucoma", so the test F1 is 2P / (N + P)
    from camcontrast_monai.data import read_refuge_glaucoma

    glaucoma = [{**e, "label": (e["label"],)} for e in read_refuge_glaucoma(str(tmp_path / "data" / "refuge" / "Training400"))]
    expected_f1 = []
    for seed in (0, 1):
        test = downstream_splits(glaucoma, seed=seed, stratify_key="label")["test"]  # as the bundle splits glaucoma
        positives = sum(e["label"][0] for e in test)
        expected_f1.append(2 * positives / (len(test) + positives))
    grading_power, glaucoma_power = results["power"]
    assert grading_power["task"] == "grading" and grading_power["trivial predictor"] == pytest.approx(sum(expected) / 2)
    assert glaucoma_power["task"] == "glaucoma" and glaucoma_power["trivial predictor"] == pytest.approx(sum(expected_f1) / 2)
    assert "## Power check" in (report / "README.md").read_text()
    # the standing check: supce-crop's fine-tuned scores against a probe of its frozen encoder on the same splits
    checks = results["probe_check"]
    assert [(c["task"], c["method"]) for c in checks] == [("grading", "supce-crop"), ("glaucoma", "supce-crop")]
    assert all(c["check"] in ("holds", "FAILS") for c in checks)
    grading_probe, glaucoma_probe = (c["linear probe, same split"][0] for c in checks)
    assert 0 <= grading_probe <= 1
    # F1 is undefined (NaN, null in JSON) only where a tiny test split holds no glaucoma (its trivial F1 is
    # then exactly 0) and the probe predicts none
    if glaucoma_probe is None or math.isnan(glaucoma_probe):
        assert 0.0 in expected_f1
    else:
        assert 0 <= glaucoma_probe <= 1
    # embedded once, from the encoder every seed fine-tuned from (shared pretraining: seed 0's)
    assert (tmp_path / "runs" / "probe_check" / "grading" / "supce-crop" / "seed0" / "embeddings.npz").is_file()
    assert "## Does fine-tuning use what the encoder knows?" in (report / "README.md").read_text()
    # crop-level probes: five positions, so the majority guess scores 1/5 on every split
    crop_rows = {(r["task"], r["encoder"]): r for r in results["crop_probes"]}
    assert set(crop_rows) == {(t, m) for t in ("crop position", "lesion in crop") for m in ("random", "supce-crop")}
    assert crop_rows["crop position", "random"]["trivial"] == pytest.approx(0.2)
    text = (report / "README.md").read_text()
    assert "| random |" in text and "| supce-crop |" in text and "Pretraining was shared" in text and "±" in text
    assert "camcontrast bench compare --out" in text and (report / "grading.png").is_file() and (report / "embeddings.png").is_file()
    # frozen probes of both methods' encoders, once per pretraining seed (shared: seed 0 only), 20 splits each
    probes = results["probes"]
    assert probes["seeds"] == [0] and set(probes["encoders"]) == {"random", "supce-crop"}
    assert len(probes["results"]["DR grade"]["linear"]["supce-crop"]) == 20
    assert "With a linear probe of frozen features, supce-crop is" in text and (report / "probes.png").is_file()
    commands = (report / "commands.md").read_text()
    assert commands.count("python -m monai.bundle run") == 9 and "pretrain_supce.json" in commands
    metrics = sorted((tmp_path / "runs" / "finetune").rglob("test_metrics.json"))
    assert len(metrics) == 8
    stamps = [path.stat().st_mtime_ns for path in metrics]

    run_compare(**grid, embedding_map=False)
    second = capsys.readouterr().out
    assert second.count("done earlier, skipped") == 9 and "resuming with the config snapshot" in second
    assert [path.stat().st_mtime_ns for path in metrics] == stamps
    # report only: a third seed is listed as not run, and no cell is complete without it
    run_compare(**{**grid, "seeds": "0,1,2"}, embedding_map=False, report_only=True)
    third = capsys.readouterr().out
    assert third.count("not run yet") == 4 and [p.stat().st_mtime_ns for p in metrics] == stamps
    assert "0 of 4 method/task/fraction cells finished" in (report / "README.md").read_text()
    with pytest.raises(ValueError, match="other sizes or data"):
        run_compare(**{**grid, "tasks": "grading", "preset": "default"})
