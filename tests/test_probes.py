"""Frozen-feature probes and paired differences: known answers on constructed features, and the bundle path end to end."""

import json

import numpy as np
import pytest
import torch

from camcontrast_monai.metrics import paired_difference
from camcontrast_monai.metrics.probes import (
    ProbeTask,
    knn_probe,
    linear_probe,
    probe_encoders,
    probe_score,
    resampled_splits,
    trivial_probe,
)


def test_paired_difference_against_a_hand_computation():
    a, b = np.array([0.9, 0.8, 0.7, 1.0]), np.array([0.5, 0.6, 0.7, 0.6])
    difference = paired_difference(a, b, n_resamples=20000)
    # differences 0.4, 0.2, 0.0, 0.4: mean 0.25, sample std sqrt(((.15)^2 + (.05)^2 + (.25)^2 + (.15)^2) / 3)
    assert difference.mean == pytest.approx(0.25)
    assert difference.std == pytest.approx(np.sqrt((0.0225 + 0.0025 + 0.0625 + 0.0225) / 3))
    # a bootstrap mean of four values lies between their min and max; the interval brackets the mean
    assert 0.0 <= difference.low < 0.25 < difference.high <= 0.4
    assert difference.excludes_zero is (difference.low > 0)
    assert str(difference).startswith("+0.250 [")


def test_paired_difference_drops_nan_pairs_and_refuses_unpaired_input():
    difference = paired_difference(np.array([1.0, np.nan, 3.0]), np.array([0.0, 1.0, 1.0]))
    assert difference.n == 2 and difference.mean == pytest.approx(1.5)
    single = paired_difference(np.array([1.0]), np.array([0.5]))
    assert single.mean == 0.5 and np.isnan(single.low)
    with pytest.raises(ValueError, match="paired scores"):
        paired_difference(np.ones(3), np.ones(4))


def _separable(n=60, dim=8, seed=0):
    """Class k sits at +3 on axis k, unit noise elsewhere: linearly separable, and clustered for kNN."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    features = rng.normal(size=(n, dim)) * 0.3
    features[np.arange(n), labels] += 3.0
    return features, labels


def test_linear_probe_and_knn_read_a_separable_feature_perfectly():
    features, labels = _separable()
    task = ProbeTask("three classes", labels)
    train, test = np.arange(0, 60, 2), np.arange(1, 60, 2)
    for probe in (linear_probe, knn_probe):
        predicted = probe(task, features[train], labels[train], features[test])
        assert probe_score(task, labels[test], predicted) == 1.0


def test_a_training_part_with_one_class_predicts_that_class():
    # a small set's resampled training part can miss a class; logistic regression cannot fit one class
    features, _ = _separable(n=12)
    task = ProbeTask("binary", np.array([0] * 10 + [1] * 2))
    for probe in (linear_probe, knn_probe):
        assert probe(task, features[:8], np.zeros(8, dtype=int), features[8:]).tolist() == [0, 0, 0, 0]


def test_trivial_probe_predicts_the_training_majority():
    task = ProbeTask("binary", np.array([0, 1, 1, 1, 0]))
    assert trivial_probe(task, np.array([0, 1, 1]), 4).tolist() == [1, 1, 1, 1]
    assert probe_score(task, np.array([1, 0, 1, 1]), trivial_probe(task, np.array([0, 1, 1]), 4)) == 0.75


def test_multilabel_probe_scores_mean_auc():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, size=(80, 3))
    features = np.concatenate([targets * 2.0 + rng.normal(size=(80, 3)) * 0.2, rng.normal(size=(80, 5))], axis=1)
    task = ProbeTask("findings", targets)
    assert task.multilabel and task.metric == "mean AUC"
    results = probe_encoders({"informative": features, "noise": rng.normal(size=(80, 8))}, task, n_splits=3)
    assert results["linear"]["informative"].min() == 1.0
    assert results["knn"]["informative"].min() > 0.95
    assert abs(results["linear"]["noise"].mean() - 0.5) < 0.2
    np.testing.assert_array_equal(results["trivial"]["trivial"], [0.5, 0.5, 0.5])  # constant scores rank nothing


def test_every_encoder_sees_the_same_stratified_splits():
    features, labels = _separable(n=90)
    task = ProbeTask("three classes", labels)
    splits = resampled_splits(task, n_splits=5, test_fraction=1 / 3, seed=3)
    assert len(splits) == 5
    for train, test in splits:
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 90
        assert np.bincount(labels[test]).tolist() == [10, 10, 10]  # stratified: a third of each class
    again = resampled_splits(task, n_splits=5, test_fraction=1 / 3, seed=3)
    assert all((a[1] == b[1]).all() for a, b in zip(splits, again, strict=True))
    noise = np.random.default_rng(0).normal(size=features.shape)
    results = probe_encoders({"separable": features, "noise": noise}, task, n_splits=5, test_fraction=1 / 3, seed=3)
    assert results["linear"]["separable"].tolist() == [1.0] * 5
    # the trivial score of a balanced split is exactly one third
    np.testing.assert_allclose(results["trivial"]["trivial"], 1 / 3)
    assert results["knn"]["noise"].mean() < 0.6
    # two processes scoring the splits give the same scores in the same order
    parallel = probe_encoders({"separable": features, "noise": noise}, task, n_splits=5, test_fraction=1 / 3, seed=3, n_jobs=2)
    for probe, by_encoder in results.items():
        for name, scores in by_encoder.items():
            np.testing.assert_array_equal(parallel[probe][name], scores)


def test_grouped_splits_keep_a_patient_on_one_side():
    labels = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1])
    groups = [index // 2 for index in range(12)]
    for train, test in resampled_splits(ProbeTask("binary", labels), n_splits=10, groups=groups):
        assert not {groups[i] for i in train} & {groups[i] for i in test}


def test_probe_refuses_features_that_do_not_match_the_labels():
    with pytest.raises(ValueError, match="3 feature rows for 4 labels"):
        probe_encoders({"encoder": np.zeros((3, 2))}, ProbeTask("t", np.array([0, 1, 0, 1])))
    with pytest.raises(ValueError, match="unknown probes"):
        probe_encoders({"encoder": np.zeros((4, 2))}, ProbeTask("t", np.array([0, 1, 0, 1])), probes=("svm",))


def test_bundle_probe_embeds_through_inference_json_and_writes_a_report(tmp_path, tiny_data):
    """The fundus bundle's probe images and tasks, features from inference.json equal to the encoder's own pooled output."""
    from monai.transforms import Compose

    from camcontrast_monai.apps.bundle import bundle_path
    from camcontrast_monai.apps.probe import embed_images, export_encoder, probe_data, run_probe
    from camcontrast_monai.networks import build_encoder

    data = tiny_data(tmp_path / "data", "fundus")
    bundle = bundle_path("fundus")
    overrides = {"bundle_root": str(bundle), "dataset_dir": str(data), "width": 2, "image_size": 32, "num_workers": 0}
    probe = probe_data(bundle, overrides)
    assert len(probe.images) == 20 and [task.name for task in probe.tasks] == ["DR grade", "DME risk", "DR or DME"]
    assert probe.groups is None

    encoder_file = export_encoder(bundle, tmp_path / "random.pt", seed=5, overrides=overrides)
    features = embed_images(bundle, encoder_file, probe.images[:3], tmp_path / "embed", overrides)
    encoder = build_encoder("unet", 2, 3, 2)
    encoder.load_state_dict(torch.load(encoder_file, weights_only=True))
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update(overrides)
    load = Compose(parser.get_parsed_content("load_image"))
    with torch.no_grad():
        image = torch.as_tensor(load({"image": probe.images[1]})["image"]).float()[None]
        expected = encoder.eval()(image).flatten(2).mean(dim=2)[0].numpy()
    np.testing.assert_allclose(features[1], expected, rtol=1e-4, atol=1e-6)

    report = run_probe("fundus", "random,other=" + str(encoder_file), str(data), str(tmp_path / "out"), n_splits=3, seed=1,
                       width=2, image_size=32, num_workers=0)  # fmt: skip
    saved = json.loads((tmp_path / "out" / "probes.json").read_text())
    assert saved["n_splits"] == 3 and set(saved["results"]) == {"DR grade", "DME risk", "DR or DME"}
    assert set(saved["results"]["DR grade"]) == {"linear", "knn", "trivial"}
    assert len(saved["results"]["DR grade"]["linear"]["random"]) == 3
    text = (report / "README.md").read_text()
    assert "random - other" in text and (report / "probes.png").stat().st_size > 10_000


def test_report_rows_leave_out_splits_without_a_score():
    from camcontrast_monai.report.probes import paired_rows, probe_summary_rows

    # as read back from probes.json: a multilabel split with no usable label is None
    results = {"findings": {"linear": {"a": [0.9, None, 0.7], "b": [0.6, 0.5, None]}, "trivial": {"trivial": [0.5, 0.5, 0.5]}}}
    rows = probe_summary_rows(results, {"findings": "mean AUC"})
    assert rows[0]["encoder"] == "a" and rows[0]["linear"][0] == pytest.approx(0.8)
    assert rows[1]["linear"][0] == pytest.approx(0.55) and rows[0]["trivial"] == 0.5
    (paired,) = paired_rows(results, "a", ["b"])
    assert paired["mean difference"] == "+0.300" and paired["splits won"] == "1/1"  # only split 0 has both


def test_split_probe_scores_by_the_fine_tuning_metric():
    from camcontrast_monai.apps.probe import split_probe_score
    from camcontrast_monai.metrics import ClassF1, JointAccuracy

    rng = np.random.default_rng(0)
    # (DR, DME) pairs whose two parts sit on separate feature axes: the probe predicts every pair right
    labels = np.stack([np.arange(40) % 3, np.arange(40) % 2], axis=1)
    features = rng.normal(size=(40, 6)) * 0.2
    features[np.arange(40), labels[:, 0]] += 3
    features[np.arange(40), 3 + labels[:, 1]] += 3
    train, test = (features[:30], labels[:30]), (features[30:], labels[30:])
    assert split_probe_score(JointAccuracy([5, 3]), [5, 3], train, test) == 1.0
    # features that carry nothing: the probe falls back to the training majority, "not glaucoma", whose F1 is 0
    glaucoma = (np.arange(40) % 4 == 0).astype(int)[:, None]
    noise = np.zeros((40, 3))
    assert split_probe_score(ClassF1(), [2], (noise[:30], glaucoma[:30]), (noise[30:], glaucoma[30:])) == 0.0


def test_split_probe_scores_each_class_of_an_auc_task():
    from camcontrast_monai.apps.probe import split_probe_score
    from camcontrast_monai.metrics import MultilabelAUC

    rng = np.random.default_rng(0)
    # CN / MCI / AD one-hot, each class on its own feature axis: every class's scores rank it perfectly
    classes = np.arange(45) % 3
    targets = np.eye(3, dtype=int)[classes]
    features = rng.normal(size=(45, 3)) * 0.2 + 3 * targets
    assert split_probe_score(MultilabelAUC(), None, (features[:30], targets[:30]), (features[30:], targets[30:])) == 1.0
    # a second label that no test image has gets no AUC and stays out of the mean; the first is read from
    # a feature that ranks it backwards on the test part, so its AUC is exactly 0
    labels = np.stack([np.arange(40) % 2, np.zeros(40, dtype=int)], axis=1)
    labels[:30:7, 1] = 1  # a few training positives, so the second label's probe has two classes to fit
    flipped = np.where(np.arange(40) < 30, labels[:, 0], 1 - labels[:, 0])[:, None] * 3.0
    score = split_probe_score(MultilabelAUC(), None, (flipped[:30], labels[:30]), (flipped[30:], labels[30:]))
    assert score == 0.0
