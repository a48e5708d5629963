"""Evaluation: test-time augmentation inside one compiled step, and ensembles over run directories."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TraceCounter, assert_same_forward
from cxrjax.configs import default
from cxrjax.data import shard_format
from cxrjax.data.findings import FINDINGS
from cxrjax.evaluation import evaluate, forward
from cxrjax.metrics import thresholds
from cxrjax.models import create_model
from cxrjax.training import train


@pytest.fixture(scope="module")
def model_and_variables():
    model = create_model("resnet18", 14)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)), train=False)
    return model, variables


def test_flip_and_tencrop_average_the_right_views(model_and_variables):
    model, variables = model_and_variables
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1), dtype=np.uint8)
    plain = forward.make_predict_step(model, jnp.float32)
    flip = forward.make_predict_step(model, jnp.float32, tta="flip")
    centre = images[:, 2:30, 2:30]
    expected_flip = (plain(variables, centre) + plain(variables, centre[:, :, ::-1])) / 2
    assert_same_forward(flip(variables, centre), expected_flip)  # a batch of 6 vs 3

    tencrop = forward.make_predict_step(model, jnp.float32, tta="tencrop", crop=28)
    windows = [images[:, t:t + 28, l:l + 28] for t, l in ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2))]
    views = windows + [w[:, :, ::-1] for w in windows]
    expected = np.mean([plain(variables, v) for v in views], axis=0)
    assert_same_forward(tencrop(variables, images), expected)  # a batch of 30 vs 3
    assert tencrop._cache_size() == 1
    tencrop(variables, images[::-1])
    assert tencrop._cache_size() == 1  # same shapes: no recompilation


def test_tta_gives_each_view_its_own_images_metadata():
    """The fusion model: every view of image n is fused with image n's age, sex and view position."""
    from cxrjax.models import init_variables

    model = create_model("resnet18", 14, architecture="fusion")
    variables = init_variables(model, jax.random.key(1), jnp.zeros((1, 28, 28, 3)))
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    metadata = {"age": np.array([20.0, 45.0, 70.0, 90.0], np.float32), "sex": np.array([0, 1, 1, 0], np.int32),
                "view": np.array([1, 0, 1, 0], np.int32)}
    plain = forward.make_predict_step(model, jnp.float32)
    flip = forward.make_predict_step(model, jnp.float32, tta="flip")
    expected = (plain(variables, images, metadata) + plain(variables, images[:, :, ::-1], metadata)) / 2
    assert_same_forward(flip(variables, images, metadata), expected)
    shuffled = {name: values[::-1] for name, values in metadata.items()}
    assert np.abs(flip(variables, images, shuffled) - expected).max() > 1e-4  # the metadata matters


def test_sharded_tta_step_needs_no_collectives(model_and_variables):
    """With the batch sharded over the 8 devices, every view of an image stays on its device: the compiled step has
    no all-gather (stacking views view-major had one, and ran ten-crop 8x slower)."""
    from cxrjax.runtime import sharding

    model, variables = model_and_variables
    images = sharding.to_global({"image": np.zeros((16, 32, 32, 1), np.uint8)}, sharding.data_mesh())["image"]
    metadata = sharding.to_global({"age": np.zeros(16, np.float32), "sex": np.zeros(16, np.int32),
                                   "view": np.zeros(16, np.int32)}, sharding.data_mesh())
    for tta, crop in (("flip", None), ("tencrop", 28)):
        step = forward.make_predict_step(model, jnp.float32, tta=tta, crop=crop)
        text = step.lower(variables, images if crop else images[:, 2:30, 2:30], metadata).compile().as_text()
        for collective in ("all-gather", "all-to-all", "collective-permute", "all-reduce"):
            assert collective not in text, (tta, collective)


def test_unknown_tta_is_refused(model_and_variables):
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        forward.tta_views(jnp.zeros((1, 8, 8, 1)), "rotate", 4)


# --- whole splits of two short runs that differ only in their seed -------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(prepared_shards, tmp_path_factory):
    """Two ResNet-18 runs of three steps on the synthetic shards, seeds 0 and 1 (same data, same split)."""
    workdirs = []
    for seed in (0, 1):
        config = default.get_config()
        config.seed = seed
        config.data.data_dir, config.data.size, config.data.crop = prepared_shards[0], 32, 28
        config.data.num_threads = 2
        config.batch_size, config.eval_batch_size, config.num_epochs, config.steps_per_epoch = 16, 32, 1, 3
        config.optimizer.learning_rate = 1e-3
        workdir = str(tmp_path_factory.mktemp(f"run_seed{seed}"))
        train.train_and_evaluate(config, workdir)
        workdirs.append(workdir)
    return workdirs


def _read_predictions(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Image Index", *FINDINGS]
    return [row[0] for row in rows[1:]], np.array([[float(v) for v in row[1:]] for row in rows[1:]])


def test_ensemble_of_two_runs_averages_their_predictions(two_runs, prepared_shards):
    first, second = two_runs
    members = []
    for workdir in two_runs:
        plain = evaluate.evaluate_workdir(workdir, "latest", "test", bootstrap=0)
        assert plain["operating_points_from"] == "checkpoint" and plain["operating_points"]
        members.append(_read_predictions(os.path.join(workdir, "eval", "test", "predictions.csv")))
    (names, a), (other_names, b) = members
    assert names == other_names and len(names) > 32  # the same test images, more than one padded batch
    assert np.abs(a - b).max() > 1e-3  # different seeds: different members

    result = evaluate.evaluate_workdir(first, "latest", "test", ensemble=[second], bootstrap=20)
    out = os.path.join(first, "eval", "test_ensemble-2")
    ensemble_names, ensemble = _read_predictions(os.path.join(out, "predictions.csv"))
    assert ensemble_names == names
    np.testing.assert_allclose(ensemble, (a + b) / 2, rtol=1e-6, atol=1e-7)  # CSVs keep 7 significant digits
    assert result["ensemble"] == [first, second]
    assert result["operating_points_from"] == "val predictions of this evaluation"
    # The ensemble's operating points: thresholds chosen on the average of the members' validation predictions.
    validation = []
    for workdir in two_runs:
        evaluate.evaluate_workdir(workdir, "latest", "val", bootstrap=0)
        validation.append(_read_predictions(os.path.join(workdir, "eval", "val", "predictions.csv")))
    val_names = validation[0][0]
    metadata = shard_format.open_shards(prepared_shards[1]).metadata
    index = {name: i for i, name in enumerate(metadata.image_index)}
    val_labels = metadata.labels[[index[name] for name in val_names]]
    expected = thresholds.choose_thresholds(val_labels, (validation[0][1] + validation[1][1]) / 2)
    for rule, by_finding in expected.items():
        for finding, threshold in by_finding.items():
            point = result["operating_points"][rule][finding]
            assert (point is None) == (threshold is None), (rule, finding)
            if threshold is not None:  # CSVs keep 7 significant digits
                assert abs(point["threshold"] - threshold) < 1e-6, (rule, finding)
    with open(os.path.join(out, "metrics.json")) as f:
        saved = json.load(f)
    assert saved["bootstrap"]["resamples"] == 20
    for key in ("mean_auc", "w_auc", "w_auc_normalized", "mean_d_auc", "mean_n_auc", "map"):
        assert saved["bootstrap"][key]["resamples_used"] > 0, key
    assert "_ensemble-2" in open(os.path.join(out, "report.md")).read()


def test_tencrop_evaluation_of_a_whole_split_traces_once(two_runs):
    with TraceCounter() as traces:
        result = evaluate.evaluate_workdir(two_runs[0], "latest", "test", tta="tencrop", bootstrap=0)
    assert traces["step"] == 1, traces
    assert result["operating_points_from"] == "val predictions of this evaluation" and result["operating_points"]
    assert result["tta"] == "tencrop" and os.path.exists(os.path.join(two_runs[0], "eval", "test_tta-tencrop",
                                                                      "predictions.csv"))


def test_eval_grades_the_images_radiologists_labelled(two_runs, prepared_shards, tmp_path):
    """`eval --expert-labels`: the test images present in the expert file are graded against its labels and
    against NIH's labels of the same images (AUCs recomputed here from predictions.csv); the report has the
    section."""
    from sklearn.metrics import roc_auc_score

    from cxrjax.evaluation import expert_labels

    workdir = two_runs[0]
    metadata = shard_format.open_shards(prepared_shards[1]).metadata
    test_names = [n for n, is_test in zip(metadata.image_index, metadata.is_test) if is_test]
    rng = np.random.default_rng(0)
    graded = test_names[::2]  # half of the test images have expert labels; the file also names unknown images
    rows = [[name, patient, *rng.choice(["YES", "NO"], 4), "test"]
            for name, patient in zip(graded, rng.integers(1, 10, len(graded)))]
    rows.append(["99999999_000.png", 1, "NO", "YES", "NO", "NO", "test"])
    path = tmp_path / "expert.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["Image Index", "Patient ID", *expert_labels.EXPERT_FINDINGS, "Set Id"], *rows])
    expert = expert_labels.read_expert_labels(str(path))
    result = evaluate.evaluate_workdir(workdir, "latest", "test", bootstrap=20, expert=expert)
    names, probabilities = _read_predictions(os.path.join(workdir, "eval", "test", "predictions.csv"))
    assert result["expert"]["num_images"] == len(graded)
    row_of = {name: i for i, name in enumerate(names)}
    index = {name: i for i, name in enumerate(metadata.image_index)}
    rows_graded = [row_of[name] for name in graded]
    for k, finding in enumerate(expert_labels.EXPERT_FINDINGS):
        entry = result["expert"]["findings"][finding]
        if finding == "Fracture":
            assert not entry["scored"]
            continue
        columns = [FINDINGS.index(f) for f in entry["from"]]
        scores = probabilities[rows_graded][:, columns].max(axis=1)
        expert_y = np.array([row[2 + k] == "YES" for row in rows[:-1]])
        nih_y = metadata.labels[[index[name] for name in graded]][:, columns].any(axis=1)
        assert entry["auc_expert"] == pytest.approx(roc_auc_score(expert_y, scores), abs=1e-6)  # CSV: 7 digits
        if nih_y.min() != nih_y.max():
            assert entry["auc_nih"] == pytest.approx(roc_auc_score(nih_y, scores), abs=1e-6)
    report = open(os.path.join(workdir, "eval", "test", "report.md")).read()
    assert "## Against radiologists" in report and "not scored" in report
