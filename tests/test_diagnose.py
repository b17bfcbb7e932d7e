"""``camcontrast diagnose`` on the shipped bundles' own augmentation, and on a finished run's files."""

import json
import math

import numpy as np
import pytest

from camcontrast_monai.apps.diagnose import format_diagnosis, run_diagnose


@pytest.mark.parametrize(("bundle", "overrides"), [("fundus", {"image_size": 96}), ("mri3d", {})])
def test_the_bundles_crops_line_up_after_their_augmentation(bundle, overrides):
    # 96 px in 2D and the paper's 80x96x80 in 3D are the sizes whose centre crops were off the heatmap grid
    alignment = run_diagnose(bundle, verbose=False, **overrides)["alignment"]
    assert alignment["problems"] == [] and alignment["crops"] == (15 if bundle == "fundus" else 30)
    assert alignment["augmentation"] == ("BatchStage2Augmentation" if bundle == "fundus" else "BatchAffineIntensityAugmentation")


def test_a_finished_run_gets_its_heatmaps_and_loss_read(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "heatmaps").mkdir(parents=True)
    (runs / "pretrain").mkdir()
    entries = []
    for index, (label, value) in enumerate([(0, 0.0), (0, 0.0), (1, 0.5), (1, 0.0)]):
        path = runs / "heatmaps" / f"{index}.npy"
        np.save(path, np.full((4, 4), value, dtype=np.float32))
        entries.append({"image": f"{index}.png", "label": label, "heatmap": str(path)})
    (runs / "heatmaps" / "heatmap_datalist.json").write_text(json.dumps(entries))
    # two epochs of two steps; the last epoch's mean is 3.0
    (runs / "pretrain" / "loss_history.json").write_text(json.dumps({"loss": [[1, 4.5], [2, 4.0], [3, 3.2], [4, 2.8]]}))
    diagnosis = run_diagnose("fundus", output_dir=str(runs), image_size=64, pretrain_epochs=2, pretrain_batch_size=4)
    assert diagnosis["heatmaps"] == {
        "abnormal": {"heatmaps": 2, "all_zero": 1, "mean_value": 0.25},
        "normal": {"heatmaps": 2, "all_zero": 2, "mean_value": 0.0},
    }
    loss = diagnosis["stage2_loss"]
    assert loss["final_epoch_loss"] == pytest.approx(3.0) and loss["batch_size"] == 4
    assert loss["collapsed"] == pytest.approx(math.log(7)) and loss["identical_heatmaps_per_batch"] == 2
    printed = capsys.readouterr().out
    assert "every crop lines up" in printed and "their CAM found nothing" in printed
    # batch 4 collapses at log 7 = 1.95: a last epoch at 3.0 has not got below it, and the diagnosis says so
    assert loss["progress"] < 0 and "NOT below the collapsed value" in format_diagnosis(diagnosis)
