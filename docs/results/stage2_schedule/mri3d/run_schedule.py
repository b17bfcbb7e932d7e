"""MRI stage-2 schedule (issue 15): the MRI demo's cohort, stage 1 and heatmaps (MRI_FULL plan, seed 0), then one
long stage 2 keeping encoder snapshots, each probed like the demo's encoders (CN/MCI/AD, 20 splits by subject)."""
import json
import sys
import time
from pathlib import Path

import camcontrast_monai  # noqa: F401  (tunes malloc on import)
from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.apps.demo.common import demo_overrides
from camcontrast_monai.apps.demo.mri3d import MRI_FULL as plan
from camcontrast_monai.apps.schedule import probe_schedule
from camcontrast_monai.synthetic import write_mri_dataset

out = Path(sys.argv[1]).resolve()
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
snapshots = [e for e in (1, 2, 3, 5, 8, 12, 16, 20, 25, 30, 40) if e <= epochs]
bundle = bundle_path("camcontrast_mri3d")
N_FOLDS = 5  # the folds this schedule was run with (the demo has since moved to 4); they set the splits
common = {**demo_overrides(bundle, out, plan.width, 0, 2), "resnet_depth": plan.resnet_depth, "n_folds": N_FOLDS, "split_seed": 0}
times = {}
start = time.time()
if not (out / "runs" / "heatmaps" / "heatmap_datalist.json").is_file():
    write_mri_dataset(out / "data", n_subjects=plan.n_subjects, seed=0, max_sessions=plan.max_sessions)
    run_bundle(bundle, ["common.json", "stage1.json"], "train", **common, stage1_epochs=plan.stage1_epochs, stage1_batch_size=plan.stage1_batch_size)
    common["check_pixels"] = False
    run_bundle(bundle, ["common.json", "heatmaps.json"], **common)
common["check_pixels"] = False
times["stage1_heatmaps_s"] = time.time() - start
start = time.time()
stage2 = run_bundle(
    bundle, ["common.json", "pretrain.json"], "train", **common, pretrain_epochs=epochs,
    pretrain_batch_size=plan.pretrain_batch_size, pretrain_lr=plan.pretrain_lr, encoder_snapshot_epochs=snapshots,
)
times["stage2_s"] = time.time() - start
steps_per_epoch = len(stage2.parser.get_parsed_content("train#dataloader"))
start = time.time()
probe_schedule(
    str(out / "runs" / "pretrain" / "encoder_snapshots"), str(out / "data"), steps_per_epoch, bundle="mri3d",
    classifier=str(out / "runs" / "stage1" / "classifier.pt"), out=str(out / "schedule"), width=plan.width,
    resnet_depth=plan.resnet_depth, n_folds=N_FOLDS, split_seed=0, check_pixels=False,
)
times["probes_s"] = time.time() - start
(out / "times.json").write_text(json.dumps({**times, "steps_per_epoch": steps_per_epoch, "epochs": epochs, "snapshots": snapshots}, indent=2))
print(json.dumps(times))
