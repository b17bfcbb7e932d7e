"""CXR stage-2 schedule (issue 15): the CXR demo's data, stage 1 and heatmaps (FULL_CXR plan, seed 0), then one
40-epoch stage 2 keeping encoder snapshots, each probed like the demo's encoders (20 splits, by patient)."""
import json
import sys
import time
from pathlib import Path

import camcontrast_monai  # noqa: F401  (tunes malloc on import)
from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.apps.demo.common import demo_overrides
from camcontrast_monai.apps.demo.cxr import FULL_CXR as plan
from camcontrast_monai.apps.schedule import probe_schedule
from camcontrast_monai.synthetic.cxr import write_chestxray14_dataset, write_siim_dataset

out = Path(sys.argv[1]).resolve()
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
snapshots = [e for e in (1, 2, 4, 6, 8, 10, 15, 20, 25, 30, 40, 50, 60) if e <= epochs]
bundle = bundle_path("camcontrast_cxr")
common = demo_overrides(bundle, out, plan.width, 0, 2)
times = {}
start = time.time()
if not (out / "runs" / "heatmaps" / "heatmap_datalist.json").is_file():
    write_chestxray14_dataset(out / "data" / "chestxray14", n=plan.n_chestxray14, seed=0, image_size=plan.image_size * 2)
    write_siim_dataset(out / "data" / "siim", n=plan.n_siim, seed=1000, image_size=plan.image_size * 2)
    run_bundle(bundle, ["common.json", "stage1.json"], "train", **common, image_size=plan.image_size, stage1_epochs=plan.stage1_epochs)
    run_bundle(bundle, ["common.json", "heatmaps.json"], **common, image_size=plan.image_size)
times["stage1_heatmaps_s"] = time.time() - start
start = time.time()
stage2 = run_bundle(
    bundle, ["common.json", "pretrain.json"], "train", **common, image_size=plan.image_size, pretrain_epochs=epochs,
    pretrain_batch_size=plan.pretrain_batch_size, pretrain_lr=plan.pretrain_lr, encoder_snapshot_epochs=snapshots,
)
times["stage2_s"] = time.time() - start
steps_per_epoch = len(stage2.parser.get_parsed_content("train#dataloader"))
start = time.time()
probe_schedule(
    str(out / "runs" / "pretrain" / "encoder_snapshots"), str(out / "data"), steps_per_epoch, bundle="cxr",
    classifier=str(out / "runs" / "stage1" / "classifier.pt"), out=str(out / "schedule"), width=plan.width,
    image_size=plan.downstream_size,
)
times["probes_s"] = time.time() - start
(out / "times.json").write_text(json.dumps({**times, "steps_per_epoch": steps_per_epoch, "epochs": epochs, "snapshots": snapshots}, indent=2))
print(json.dumps(times))
