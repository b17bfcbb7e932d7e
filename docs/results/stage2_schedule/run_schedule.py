"""Stage-2 schedule of a demo setting (issue 15): the demo's data, stage 1 and heatmaps (its full plan, seed 0),
then one long stage 2 keeping encoder snapshots, each probed like the demo's encoders (20 splits, grouped by
patient or subject).

    python docs/results/stage2_schedule/run_schedule.py cxr|mri3d OUT [EPOCHS] [--quick]

Writes OUT/schedule/report/README.md with the curves, and OUT/times.json. ``--quick`` takes the demo's quick
plan, a one-minute check that the script runs.
"""

import json
import sys
import time
from pathlib import Path

import camcontrast_monai  # noqa: F401  (tunes malloc on import)
from camcontrast_monai.apps.bundle import bundle_path
from camcontrast_monai.apps.demo.common import demo_overrides
from camcontrast_monai.apps.demo.driver import demo_setting, run_step
from camcontrast_monai.apps.schedule import probe_schedule

# default epochs, snapshot epochs and the overrides each committed curve was run with
SCHEDULES = {
    "cxr": (40, (1, 2, 4, 6, 8, 10, 15, 20, 25, 30, 40, 50, 60), {}),
    # the MRI curve was run with 5 folds (the demo has since moved to 4); the folds set the probe's splits
    "mri3d": (30, (1, 2, 3, 5, 8, 12, 16, 20, 25, 30, 40), {"n_folds": 5}),
}

quick = "--quick" in sys.argv
args = [arg for arg in sys.argv[1:] if arg != "--quick"]
name, out = args[0], Path(args[1]).resolve()
assert name in SCHEDULES, f"choose one of {sorted(SCHEDULES)}"
setting = demo_setting(name)
default_epochs, snapshot_epochs, schedule_overrides = SCHEDULES[name]
epochs = int(args[2]) if len(args) > 2 else default_epochs
snapshots = [e for e in snapshot_epochs if e <= epochs]
plan = setting.quick if quick else setting.full
bundle = bundle_path(setting.bundle_name)
common = {**demo_overrides(bundle, out, plan.width, 0, 2), **setting.common_overrides(plan, 0), **schedule_overrides}
stage1, heatmaps, stage2 = setting.pretraining_runs(plan)

times = {}
start = time.time()
prepared = (out / "runs" / "heatmaps" / "heatmap_datalist.json").is_file()
if not prepared:
    setting.write_data(out / "data", plan, 0)
    run_step(bundle, stage1, common)
common.update(setting.after_stage1)
if not prepared:
    run_step(bundle, heatmaps, common)
times["stage1_heatmaps_s"] = time.time() - start
start = time.time()
workflow = run_step(bundle, stage2, common, pretrain_epochs=epochs, encoder_snapshot_epochs=snapshots)
times["stage2_s"] = time.time() - start
steps_per_epoch = len(workflow.parser.get_parsed_content("train#dataloader"))
start = time.time()
probe_overrides = {
    **setting.common_overrides(plan, 0), **schedule_overrides, **setting.after_stage1, **setting.probe_overrides(plan),
}
probe_schedule(
    str(out / "runs" / "pretrain" / "encoder_snapshots"), str(out / "data"), steps_per_epoch, bundle=name,
    classifier=str(out / "runs" / "stage1" / "classifier.pt"), out=str(out / "schedule"), width=plan.width,
    **probe_overrides,
)
times["probes_s"] = time.time() - start
(out / "times.json").write_text(json.dumps({**times, "steps_per_epoch": steps_per_epoch, "epochs": epochs, "snapshots": snapshots}, indent=2))
print(json.dumps(times))
