"""Applications on top of the library; nothing below ``apps`` imports them.

- ``cli``: the ``camcontrast`` command (fire), one subcommand per application below;
- ``bundle``: finds, exports and runs the bundles shipped in the package;
- ``demo``: synthetic data -> bundle stages -> report, for fundus, chest X-ray and brain MRI;
- ``compare``: the downstream comparison of pretraining methods over paired seeds;
- ``probe`` and ``schedule``: frozen-feature probes of encoders, and of stage-2 snapshots along a run;
- ``bench``: throughput benchmarks (stage-2 step, pipeline, heatmaps) and the GPU check;
- ``check_data``: ``camcontrast check-data``, a data set's files checked against its readers.
"""
