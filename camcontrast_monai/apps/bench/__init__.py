"""Benchmarks that print ratios against a baseline run in the same process: ``step`` (stage-2 training
step against its compute), ``pipeline`` (stage 2 end to end against the reference-style pipeline, and
heatmap generation) and ``gpu_check`` (both at the paper's sizes on a GPU, run by scripts/gpu_check.sh)."""
