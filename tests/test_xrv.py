"""torchxrayvision's chest X-ray models in cxrjax: exact import, zero-shot prediction, evaluation at step 0 and
fine-tuning from them.

The reference is torchxrayvision itself (installed with the test extra), reading files made as torchxrayvision makes
them — a pickled `xrv.models.DenseNet`, a torchvision ResNet-50 state dict with a one-channel `conv1` — from random
weights, perturbed so that every BatchNorm statistic and the classifier matter. Each file is put in a cache folder
under the name torchxrayvision downloads it as, so `xrv.models.DenseNet(weights=..., cache_dir=...)` loads it as it
would the real one (its operating points and resolution included) and nothing downloads.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FORWARD_RTOL, PROBABILITY_ROUNDING, shared_data
from cxrjax import cli
from cxrjax.data import images
from cxrjax.data.findings import FINDINGS
from cxrjax.models import create_model, weights, xrv
from cxrjax.models.preprocess import normalize

torch = pytest.importorskip("torch")
torchxrayvision = pytest.importorskip("torchxrayvision")
torchvision = pytest.importorskip("torchvision")

DENSENET, RESNET = "densenet121-res224-all", "resnet50-res512-all"


def _perturb(module, seed: int, head_scale: float) -> None:
    """BatchNorm statistics and affine terms away from their identity initialisation, and a classifier whose
    logits are of order 1 (so the operating-point scaling is exercised on both sides of every threshold)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                for tensor, low, high in ((layer.running_mean, -0.2, 0.2), (layer.running_var, 0.5, 1.5),
                                          (layer.weight, 0.5, 1.5), (layer.bias, -0.2, 0.2)):
                    tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))
        head = module.classifier if hasattr(module, "classifier") else module.fc
        head.weight.mul_(head_scale)
        head.bias.copy_(-3 + torch.rand(head.bias.shape, generator=generator))


def _cached_name(name: str) -> str:
    return os.path.basename(torchxrayvision.models.model_urls[name]["weights_url"])


@pytest.fixture(scope="module")
def xrv_cache(tmp_path_factory):
    """A torchxrayvision cache folder holding a random DenseNet-121 (pickled module, as released) and ResNet-50
    (state dict, as released) under their download names."""
    cache = tmp_path_factory.mktemp("xrv_cache")
    torch.manual_seed(0)
    densenet = torchxrayvision.models.DenseNet(in_channels=1, num_classes=18)
    _perturb(densenet, 1, head_scale=1e-3)
    torch.save(densenet, cache / _cached_name(DENSENET))
    resnet = torchvision.models.resnet50(num_classes=18)
    resnet.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    _perturb(resnet, 2, head_scale=1e-5)  # its pooled features are ~100x larger than DenseNet's
    torch.save(resnet.state_dict(), cache / _cached_name(RESNET))
    return cache


def _reference(name: str, cache, operating_points: bool = True):
    model = torchxrayvision.models.get_model(name, cache_dir=str(cache))
    if not operating_points:
        model.op_threshs = None
    return model.eval()


def _xrv_pixels(pixels: np.ndarray):
    """uint8 (N, H, W, 1) → the tensor torchxrayvision's models take: `xrv.datasets.normalize(img, 255)`, NCHW."""
    return torch.from_numpy(np.stack([torchxrayvision.datasets.normalize(p[..., 0], 255) for p in pixels])[:, None])


@pytest.mark.parametrize("name,size", [(DENSENET, 224), (RESNET, 512)])
def test_import_is_exact(xrv_cache, name, size):
    variables, source = xrv.from_torchxrayvision(xrv_cache / _cached_name(name), name)
    model = create_model(source["backbone"], len(FINDINGS))
    pixels = np.random.default_rng(0).integers(0, 256, (2, size, size, 1), dtype=np.uint8)
    logits = np.asarray(model.apply(variables, normalize(jnp.asarray(pixels), scaling="xrv"), train=False)["logits"])
    reference = _reference(name, xrv_cache)
    columns = [reference.targets.index(finding) for finding in FINDINGS]
    with torch.no_grad():
        expected_logits = _reference(name, xrv_cache, operating_points=False)(_xrv_pixels(pixels)).numpy()[:, columns]
        expected_scores = reference(_xrv_pixels(pixels)).numpy()[:, columns]
    scale = float(np.sqrt(np.mean(expected_logits ** 2)))
    assert 0.5 < scale < 20  # logits of order 1: the comparison below is not of saturated sigmoids
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4 * scale, rtol=0)
    thresholds = [source["thresholds"][finding] for finding in FINDINGS]
    probabilities = np.asarray(jax.nn.sigmoid(logits))
    scores = xrv.op_norm(probabilities, thresholds)
    # The scores are equal up to float32 rounding of the logits (FORWARD_RTOL of their RMS, tests/conftest.py)
    # carried through the sigmoid, p(1 − p), and op_norm's slope, 1 / 2t below the operating point t and
    # 1 / 2(1 − t) above: 1.0e-6 at most for the DenseNet here, up to 2e-6 for the ResNet-50 at 512².
    t = np.array(thresholds, np.float64)
    slope = np.where(probabilities < t, 1 / (2 * t), 1 / (2 * (1 - t)))
    bound = slope * probabilities * (1 - probabilities) * FORWARD_RTOL * scale + PROBABILITY_ROUNDING
    assert (np.abs(scores - expected_scores) <= bound).all(), np.abs(scores - expected_scores).max()
    assert ((scores < 0.4) & (scores > 0.05)).any() and (scores > 0.5).any()  # both sides of the operating points

    table = torchxrayvision.models.model_urls[name]
    assert source["input"] == "xrv" and source["resolution"] == table["input_resolution"] == size
    outputs = torchxrayvision.datasets.default_pathologies
    for finding in FINDINGS:
        expected = table["op_threshs"][outputs.index(finding)]
        assert source["thresholds"][finding] == (None if np.isnan(expected) else pytest.approx(expected))
    assert sorted(source["dropped_outputs"]) == sorted(set(outputs) - set(FINDINGS))
    assert len(source["dropped_outputs"]) == 4


def test_untrained_outputs_have_no_operating_point():
    """The NIH-only DenseNet has NaN operating points for the outputs NIH does not label; the CheXpert one for
    findings CheXpert lacks: those findings get no threshold, and the description says so."""
    nih = xrv.source_model("densenet121-res224-nih").describe()
    assert nih["untrained"] == [] and all(value is not None for value in nih["thresholds"].values())
    chex = xrv.source_model("densenet121-res224-chex").describe()
    table = torchxrayvision.models.model_urls["densenet121-res224-chex"]
    outputs = torchxrayvision.datasets.default_pathologies
    expected = [f for f in FINDINGS if not table["labels"][outputs.index(f)]]
    assert chex["untrained"] == expected and len(expected) == 7  # Infiltration, Mass, Nodule, Emphysema, ...
    assert all(chex["thresholds"][f] is None for f in expected)


def test_bad_imports_are_one_line(xrv_cache, tmp_path, capsys):
    out = str(tmp_path / "x.msgpack")
    assert cli.main(["import-weights", "--from", "torchxrayvision", str(xrv_cache / _cached_name(DENSENET)),
                     "--model", "densenet121-res224-everything", "--out", out]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "unknown torchxrayvision model" in error and DENSENET in error
    # The ResNet file given as the DenseNet: its classifier is not there.
    assert cli.main(["import-weights", "--from", "torchxrayvision", str(xrv_cache / _cached_name(RESNET)),
                     "--model", DENSENET, "--out", out]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "'classifier.weight'" in error
    assert not os.path.exists(out)


@pytest.fixture(scope="module")
def imported(xrv_cache, tmp_path_factory):
    """`cxrjax import-weights --from torchxrayvision` of the random DenseNet: the .msgpack path."""
    out = str(tmp_path_factory.mktemp("weights") / "xrv_all.msgpack")
    assert cli.main(["import-weights", "--from", "torchxrayvision", str(xrv_cache / _cached_name(DENSENET)),
                     "--model", DENSENET, "--out", out]) == 0
    return out


def test_zero_shot_predict_of_the_real_images_is_torchxrayvisions_forward(imported, xrv_cache, capsys):
    """The 80 real release images through `cxrjax predict --weights`: the same probabilities as torchxrayvision's
    own forward pass of the same preprocessed pixels (224², one channel, [−1024, 1024]), and positive exactly where
    its operating-point-normalised score passes 0.5."""
    folder = shared_data("nih", "images")
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    assert len(paths) == 80
    capsys.readouterr()
    assert cli.main(["predict", "--weights", imported, "--json", *paths]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["thresholds"]["rule"] == "torchxrayvision" and not result["errors"]
    probabilities = np.array([[p["probabilities"][f] for f in FINDINGS] for p in result["predictions"]])

    pixels = np.stack([images.load_input(path, 224, 224)[0] for path in paths])
    reference = _reference(DENSENET, xrv_cache, operating_points=False)
    columns = [reference.targets.index(finding) for finding in FINDINGS]
    with torch.no_grad():
        expected = torch.sigmoid(reference(_xrv_pixels(pixels))).numpy()[:, columns]
        scores = _reference(DENSENET, xrv_cache)(_xrv_pixels(pixels)).numpy()[:, columns]
    np.testing.assert_allclose(probabilities, expected, atol=2e-6, rtol=0)
    positive = [set(p["positive"]) for p in result["predictions"]]
    # Where a score sits within rounding of 0.5 the decision may go either way; everywhere else it must agree.
    clear = np.abs(scores - 0.5) > 1e-5
    for row, found in enumerate(positive):
        for k, finding in enumerate(FINDINGS):
            if clear[row, k]:
                assert (finding in found) == (scores[row, k] >= 0.5), (paths[row], finding)
    assert any(positive) and not all(len(found) == len(FINDINGS) for found in positive)


def test_the_api_loads_an_imported_model(imported):
    import cxrjax

    predictor = cxrjax.load(imported)
    assert predictor.thresholds.rule == "torchxrayvision"
    assert predictor.run.config.model.input == "xrv" and predictor.run.config.data.crop == 224


@pytest.fixture(scope="module")
def small_imported(imported, tmp_path_factory):
    """The imported model described at 32² (a CNN takes any size), to evaluate and fine-tune on the 32² shards."""
    variables, source = weights.load_weights_file(imported)
    path = str(tmp_path_factory.mktemp("weights32") / "xrv_all_32.msgpack")
    weights.save_variables(path, variables, source=source | {"resolution": 32})
    return path


def test_eval_of_an_imported_model_before_training(small_imported, prepared_shards, tmp_path, capsys):
    data_dir, _ = prepared_shards
    out = str(tmp_path / "eval")
    assert cli.main(["eval", "--weights", small_imported, "--data-dir", data_dir, "--out", out, "--split", "test",
                     "--bootstrap", "20"]) == 0
    metrics = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert metrics["step"] == 0
    assert set(metrics["operating_points"]) == {"youden", "f1", "torchxrayvision"}
    source = weights.load_source(small_imported)
    assert {f: p and p["threshold"] for f, p in metrics["operating_points"]["torchxrayvision"].items()} == \
        pytest.approx(source["thresholds"])
    report = open(os.path.join(out, "report.md")).read()
    assert "the imported model's own operating points" in report


def test_eval_of_an_imported_model_needs_data_and_out(small_imported, capsys):
    assert cli.main(["eval", "--weights", small_imported]) == 1
    assert "needs --data-dir" in capsys.readouterr().err


def test_fine_tuning_from_an_imported_model(small_imported, prepared_shards, tmp_path, capsys):
    """CheXNet's row from the imported DenseNet: refused with the fix named when the config feeds ImageNet inputs;
    with `model.input=xrv`, step 0 is the imported model (its head included) and training runs."""
    data_dir, _ = prepared_shards
    base = ["train", "--config", "experiments/chexnet.py:smoke", "--workdir", str(tmp_path / "run"),
            f"--config.data.data_dir={data_dir}", "--config.data.size=32", "--config.data.crop=32",
            f"--config.model.pretrained={small_imported}"]
    assert cli.main(base) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--config.model.input=xrv" in error
    assert not os.listdir(tmp_path / "run" / "checkpoints")  # nothing saved

    from cxrjax.configs import default
    from cxrjax.training.run import build_run

    config = default.get_config()
    config.model.name, config.model.input, config.model.pretrained = "densenet121", "xrv", small_imported
    config.data.data_dir, config.data.size, config.data.crop = data_dir, 32, 32
    run = build_run(config)
    expected = weights.load_variables(small_imported)
    start = jax.tree.map(np.asarray, run.variables())
    assert jax.tree.structure(start) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(start), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(got, want)
    assert run.state.params["backbone"]["conv0"]["kernel"].shape[2] == 1  # one input channel

    assert cli.main([*base, "--config.model.input=xrv"]) == 0
    metrics = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert any("val_mean_auc" in m for m in metrics)


def test_op_norm_is_torchxrayvisions():
    probabilities = np.random.default_rng(1).random((50, 4)).astype(np.float32)
    thresholds = [0.1, 0.5, None, 0.9]
    expected = torchxrayvision.models.op_norm(torch.from_numpy(probabilities),
                                              torch.tensor([0.1, 0.5, float("nan"), 0.9])).numpy()
    np.testing.assert_array_equal(xrv.op_norm(probabilities, thresholds), expected)
