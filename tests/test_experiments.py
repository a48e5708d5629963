"""Every paper config, in every variant, smoke-trains (two steps) and evaluates on the synthetic release; variants
combine or exclude each other as documented; ImageNet-started rows refuse to start without weights; F-MSML learns."""

import gc
import glob
import importlib.util
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import real_run
from cxrjax import losses
from cxrjax.configs import default as default_config
from cxrjax.configs import demo as demo_config
from cxrjax.data.findings import FINDINGS
from cxrjax.evaluation import evaluate
from cxrjax.runtime import checkpoint, sharding
from cxrjax.training import train
from cxrjax.training.run import build_run

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
# Every config file; "[!_]" leaves out __init__.py (the folder is the package cxrjax.experiments when installed).
CONFIG_FILES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(EXPERIMENTS, "[!_]*.py")))


def load_module(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXPERIMENTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(name: str, argument: str | None):
    return load_module(name).get_config(argument)


def join(*arguments: str) -> str:
    """`join("large,meta", "smoke")` → "large,meta,smoke"; empty parts ("" = a file's default variant) dropped."""
    return ",".join(a for a in arguments if a)


def smoke_groups():
    """(file, variants) per distinct smoke config: variants whose `:smoke` configs are equal (Baltruschat's
    finetuned / scratch / large: smoke drops the weights and shrinks the input to 56²) are one training run."""
    cases = []
    for name in CONFIG_FILES:
        groups: dict[str, list[str]] = {}
        for variant in load_module(name).VARIANTS:
            key = json.dumps(load_config(name, join(variant, "smoke")).to_dict(), sort_keys=True, default=str)
            groups.setdefault(key, []).append(variant)
        cases += [pytest.param(name, tuple(variants), id=f"{name}:{'|'.join(v or 'default' for v in variants)}")
                  for variants in groups.values()]
    return cases


SMOKE_GROUPS = smoke_groups()
VARIANT_CASES = [pytest.param(name, variant, id=f"{name}:{variant or 'default'}")
                 for name in CONFIG_FILES for variant in load_module(name).VARIANTS]


@pytest.fixture(autouse=True)
def one_device(monkeypatch):
    """Smoke runs check configs, not sharding (tests/test_train.py does that on 8 devices): on one device, a Swin-B
    state is not replicated 8 times in host memory. Caches are dropped after each run to keep memory flat."""
    whole = sharding.data_mesh
    monkeypatch.setattr(sharding, "data_mesh", lambda devices=None: whole(jax.devices()[:1]))
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """A 60-image synthetic release prepared at 64² (CNN smoke runs) and 256² (Swin's 224 crops)."""
    from data_pipelines import synthetic
    from data_pipelines.prepare import prepare

    release = str(tmp_path_factory.mktemp("smoke_release"))
    synthetic.write_release(release, num_images=60, size=256, seed=2)
    data_dir = str(tmp_path_factory.mktemp("smoke_data"))
    for size in (64, 256):
        prepare(release, data_dir, size=size, num_workers=1)
    return data_dir


def override(config, overrides: dict):
    """`override(config, {"data.size": 64, "batch_size": 8})`, like `--config.FIELD=VALUE` flags."""
    for path, value in overrides.items():
        *sections, field = path.split(".")
        node = config
        for section in sections:
            node = node[section]
        node[field] = value
    return config


def smoke(name, argument, data_dir, workdir, overrides=None, steps=2):
    config = override(load_config(name, argument), {"data.data_dir": data_dir, **(overrides or {})})
    result = train.train_and_evaluate(config, workdir)
    assert result["step"] == steps
    metrics = evaluate.evaluate_workdir(workdir, "latest", "test", bootstrap=0)
    assert metrics["num_images"] > 0 and all(0 <= v <= 1 for v in metrics["auc"].values() if v is not None)
    return config, metrics


def _params(workdir):
    return checkpoint.load_variables(workdir, "latest")[3]["params"]


def test_every_experiment_file_is_listed_in_the_readme():
    with open(os.path.join(EXPERIMENTS, "README.md")) as f:
        readme = f.read()
    assert CONFIG_FILES and all(f"{name}.py" in readme for name in CONFIG_FILES)


@pytest.mark.parametrize("name, variants", SMOKE_GROUPS)
def test_every_variant_smoke_trains_and_evaluates(name, variants, smoke_data, tmp_path, request):
    """Every file × every variant of its `VARIANTS`, one training run per distinct smoke config (`smoke_groups`).

    Capstone's loss-ablation rows all use Swin-B and differ from the default only in the loss: the default
    (class_aware) is one full Swin-B smoke run; each other loss row is asserted to differ from it only in `losses`,
    and its objective is built the way training builds it and evaluated, with gradients, on a batch (finite values,
    non-zero gradients) instead of another Swin-B run. Frozen modules are checked unchanged against the same seed's
    initial state (Local-Fixed: against its stage 1, `fmsml_stage1`, as `init_from`); fusion gets the 5 metadata
    inputs."""
    variant = variants[0]
    if name == "capstone2023_swin_b" and variant == "image_split":  # the default's training on another split
        config, reference = load_config(name, "image_split,smoke").to_dict(), load_config(name, "smoke").to_dict()
        assert config.pop("data").pop("protocol") == "official_images"
        assert reference.pop("data").pop("protocol") == "official" and config == reference
        return
    if name == "capstone2023_swin_b" and variant != "class_aware":
        config, reference = load_config(name, join(variant, "smoke")).to_dict(), load_config(name, "smoke").to_dict()
        spec = config.pop("losses")
        assert spec != reference.pop("losses") and config == reference
        rng = np.random.default_rng(0)
        labels = jnp.asarray(rng.random((8, len(FINDINGS))) < 0.3, jnp.float32)
        objective = losses.build_objective(spec, positive_rate=np.full(len(FINDINGS), 0.3))
        logits = jnp.asarray(rng.normal(size=(8, len(FINDINGS))), jnp.float32)
        value, grad = jax.value_and_grad(lambda z: objective({"logits": z}, labels)[0])(logits)
        assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.any(grad != 0)
        return
    workdir, overrides = str(tmp_path), {}
    if name == "ge2018_r18_fmsml" and variant == "local1":  # trained once, as stage 1 of the stage-2 rows
        workdir = request.getfixturevalue("fmsml_stage1")
        config = load_config(name, "local1,smoke")
    else:
        if name == "ge2018_r18_fmsml" and variant in ("local2", "local_fixed2"):
            overrides = {"model.init_from": request.getfixturevalue("fmsml_stage1")}
        config, _ = smoke(name, join(variant, "smoke"), smoke_data, workdir, overrides)
    params = _params(workdir)
    if config.model.frozen:  # the initial state: the same seed's init, or the stage-1 checkpoint (init_from)
        initial = build_run(config).state.params
        for module in config.model.frozen:
            assert all(jax.tree.leaves(jax.tree.map(np.array_equal, initial[module], params[module])))
        assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, initial, params)))
    if variant == "local_fixed2":
        assert config.model.frozen == ("stream1", "stream2") and "fce" in config.losses
        assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, initial["fce"], params["fce"])))
    if config.model.architecture == "fusion":
        assert params["fc"]["kernel"].shape[0] == 2048 + 5


@pytest.fixture(scope="module")
def fmsml_stage1(smoke_data, tmp_path_factory):
    """`ge2018_r18_fmsml:local1,smoke` trained once: stage 1 of Local / Local-Fixed, `init_from` of their stage 2."""
    workdir = str(tmp_path_factory.mktemp("fmsml_stage1"))
    smoke("ge2018_r18_fmsml", "local1,smoke", smoke_data, workdir)
    return workdir


@pytest.mark.parametrize("init", ["finetuned", "frozen", "scratch"])
def test_baltruschat_large_meta_combine_with_any_initialisation(init):
    config = load_config("baltruschat2019_resnet50", f"large,meta,{init}")
    assert (config.data.size, config.data.crop, config.model.architecture) == (512, 448, "fusion")
    assert config.model.frozen == (("backbone",) if init == "frozen" else ())
    assert config.model.require_pretrained == (init != "scratch")
    assert load_config("baltruschat2019_resnet50", "large,meta") == load_config("baltruschat2019_resnet50",
                                                                                 "meta,finetuned,large")


@pytest.mark.parametrize("name, argument", [("baltruschat2019_resnet50", "finetuned,scratch"),
                                            ("baltruschat2019_resnet50", "frozen,scratch,large,smoke"),
                                            ("ge2018_r18_fmsml", "local1,local2"),
                                            ("capstone2023_swin_b", "bce,focal,smoke")])
def test_exclusive_variants_are_refused(name, argument):
    with pytest.raises(ValueError, match="exclude each other"):
        load_config(name, argument)


def test_unknown_config_argument_is_refused():
    with pytest.raises(ValueError, match="unknown config argument"):
        load_config("ge2018_r18", "bogus")


@pytest.mark.parametrize("name, variant", VARIANT_CASES)
def test_imagenet_rows_require_pretrained_weights(name, variant):
    """Every paper row starts from ImageNet but Baltruschat's from-scratch ones (`:scratch`, and the depth study's
    rows, X-ray-specific by default); `:scratch` and `:smoke` opt out."""
    from_scratch = ("scratch" in variant.split(",")
                    or getattr(load_module(name), "DEFAULT_INITIALISATION", "imagenet") == "scratch")
    assert load_config(name, variant).model.require_pretrained == (not from_scratch)
    initialisations = getattr(load_module(name), "INITIALISATIONS", ())  # Baltruschat's: `scratch` is one of them
    others = ",".join(a for a in variant.split(",") if a not in initialisations)
    assert not load_config(name, join(others, "scratch")).model.require_pretrained
    assert not load_config(name, join(variant, "smoke")).model.require_pretrained


def test_default_and_demo_configs_do_not_require_weights():
    assert not default_config.get_config().model.require_pretrained
    assert not demo_config.get_config().model.require_pretrained


@pytest.mark.parametrize("init", ["finetuned", "frozen"])
def test_finetuned_and_frozen_refuse_to_start_without_weights(init, smoke_data):
    config = override(load_config("baltruschat2019_resnet50", init), {"data.data_dir": smoke_data})
    with pytest.raises(ValueError, match=r"needs --config\.model\.pretrained=weights/resnet50\.msgpack .*"
                                         r"use :scratch to train from random weights"):
        build_run(config)


def test_scratch_starts_without_weights(smoke_data):
    config = load_config("baltruschat2019_resnet50", "scratch")
    assert not config.model.pretrained and not config.model.require_pretrained
    override(config, {"data.data_dir": smoke_data, "data.size": 64, "data.crop": 56})
    assert build_run(config).state.step == 0


@pytest.mark.parametrize("stage2", ["local2", "local_fixed2"])
def test_stage_two_refuses_to_start_without_its_stage_one(stage2, smoke_data):
    """Ge's Local / Local-Fixed stage 2 starts from stage 1's checkpoint; ImageNet weights alone do not make one."""
    config = override(load_config("ge2018_r18_fmsml", stage2),
                      {"data.data_dir": smoke_data, "model.pretrained": "weights/resnet18.msgpack"})
    with pytest.raises(ValueError, match=r"stage 2 of a staged training: it needs --config\.model\.init_from="):
        build_run(config)
    assert load_config("ge2018_r18_fmsml", stage2).model.require_init_from
    assert not load_config("ge2018_r18_fmsml", join(stage2, "smoke")).model.require_init_from


def test_exclusive_variants_on_the_command_line_are_one_error_line(tmp_path, capsys):
    from cxrjax import cli

    config = os.path.join(EXPERIMENTS, "baltruschat2019_resnet50.py")
    assert cli.main(["train", "--config", f"{config}:frozen,scratch", "--workdir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith("cxrjax train: error:") and "['frozen', 'scratch'] exclude each other" in error


@pytest.fixture(scope="module")
def learning_data(tmp_path_factory):
    """A 1,500-image synthetic release drawn at 64², prepared at 32²: its random 20% test split (296 images) holds
    positives of all 14 findings."""
    from data_pipelines import synthetic
    from data_pipelines.prepare import prepare

    release = str(tmp_path_factory.mktemp("learning_release"))
    synthetic.write_release(release, num_images=1500, size=64, seed=3)
    data_dir = str(tmp_path_factory.mktemp("learning_data"))
    prepare(release, data_dir, size=32, num_workers=1)
    return data_dir


# What `ge2018_r18_fmsml:smoke` is trained with here so that it learns in about a minute on 2 CPU cores: 60 steps
# of batch 16 (one epoch of 0.9 of the 70% training split), Adam 1e-3 (Ge: 1e-4, too slow for 60 steps) at a
# constant rate, 28² crops of the 32² shards (smoke: 56² of 64²). Everything else is the smoke config.
FMSML_LEARNING = {"data.size": 32, "data.crop": 28, "batch_size": 16, "eval_batch_size": 100, "num_epochs": 1,
                  "steps_per_epoch": 60, "log_every_steps": 10, "optimizer.learning_rate": 1e-3,
                  "optimizer.decay_every_epochs": 0}


def test_fmsml_beats_chance_on_the_synthetic_release(learning_data, tmp_path):
    """`ge2018_r18_fmsml:smoke` (two-stream ResNet-18, bilinear FCE head, MSML + CE + FCE losses) trained with
    `FMSML_LEARNING`: every logged loss is finite and the test AUC of each of the 14 findings is above 0.5.
    Measured 2026-12-01 with the batch-per-element input pipeline (2 CPU cores, ~70 s): 296 test images, mean AUC
    0.8826, worst Fibrosis 0.718 (0.8986 and Pleural_Thickening 0.761 under the previous pipeline's data order)."""
    _, metrics = smoke("ge2018_r18_fmsml", "smoke", learning_data, str(tmp_path), FMSML_LEARNING, steps=60)
    with open(tmp_path / "metrics.jsonl") as f:
        logged = [json.loads(line) for line in f]
    assert sum("loss" in row for row in logged) == 6
    assert all(math.isfinite(value) for row in logged for name, value in row.items() if "loss" in name)
    auc = metrics["auc"]
    print(f"\nF-MSML synthetic test AUC: mean {metrics['mean_auc']:.4f} over {metrics['num_images']} images; "
          + ", ".join(f"{finding} {auc[finding]:.3f}" for finding in FINDINGS if auc[finding] is not None))
    assert all(auc[finding] is not None and auc[finding] > 0.5 for finding in FINDINGS), auc


def test_ge_local_stage_2_fine_tunes_with_fce_alone():
    """Ge's Local and Local-Fixed: stage 1 trains the streams with CE + MSML, stage 2 fine-tunes with FCE alone
    (Local-Fixed: the streams frozen); Global trains all three terms together."""
    assert dict(load_config("ge2018_r18_fmsml", "").losses.to_dict()) == {
        "ce": {"loss": "bce", "weight": 0.2}, "msml": {"loss": "msml", "weight": 0.2},
        "fce": {"loss": "bce", "weight": 0.6}}
    assert set(load_config("ge2018_r18_fmsml", "local1").losses) == {"ce", "msml"}
    for variant, frozen in (("local2", ()), ("local_fixed2", ("stream1", "stream2"))):
        config = load_config("ge2018_r18_fmsml", variant)
        assert set(config.losses) == {"fce"} and tuple(config.model.frozen) == frozen, variant
        assert config.model.require_init_from and config.model.predict_head == "fce"


def _output_shape(module, size):
    return jax.eval_shape(lambda: module.init_with_output(jax.random.key(0), jnp.zeros((1, size, size, 3)))[0]).shape


def test_ge_bilinear_pooling_reads_the_last_convolutional_layer():
    """VGG-F-MSML's streams end at conv5_3 (14×14 at 224²), not pool5 (7×7); a plain VGG classifier keeps pool5;
    the ResNet and DenseNet rows' maps are their last layer's already."""
    from cxrjax.models import create_model, model_from_config

    vgg = model_from_config(load_config("ge2018_vgg16_fmsml", "").model)
    assert _output_shape(vgg.stream1, 224) == _output_shape(vgg.stream2, 224) == (1, 14, 14, 512)
    assert _output_shape(create_model("vgg16", 14).backbone, 224) == (1, 7, 7, 512)
    for name, channels in (("ge2018_r18_fmsml", 512), ("ge2018_d121_bl", 1024)):
        model = model_from_config(load_config(name, "").model)
        stream = model.stream1 if hasattr(model, "stream1") else model.backbone
        assert _output_shape(stream, 224) == (1, 7, 7, channels), name


def test_capstone_rows_state_their_class_weights_and_split():
    """The capstone's headline loss weights each class by its inverse positive rate (the documented reading of
    "based on the ratio of positive samples between classes"); `:class_aware_unit_weights` is w_i = 1; `:image_split`
    combines with any loss row."""
    kwargs = load_config("capstone2023_swin_b", "").losses.logits.kwargs
    assert kwargs.class_weight == "inverse_positive_rate" and kwargs.margin == 0.2
    assert "class_weight" not in load_config("capstone2023_swin_b", "class_aware_unit_weights").losses.logits.kwargs
    config = load_config("capstone2023_swin_b", "image_split,bce")
    assert config.data.protocol == "official_images" and config.losses.logits.loss == "bce"


def test_wang_and_chexnet_rows_are_their_papers_experiments():
    """Wang 2017: ResNet-50 + transition layer + LSE pooling, SGD, weighted BCE, on the official split its 14-finding
    number comes from. CheXNet: its own random 70/10/20 split, 224² without crops, flips only, the model of lowest
    validation loss; `:official` the same on the official split."""
    wang = load_config("wang2017_resnet50", "")
    assert (wang.data.protocol, wang.model.name, wang.model.architecture) == ("official", "resnet50", "lse")
    assert wang.optimizer.name == "sgd" and wang.losses.logits.loss == "weighted_bce"
    chexnet = load_config("chexnet", "")
    assert (chexnet.data.protocol, tuple(chexnet.data.fractions)) == ("random", (0.7, 0.1, 0.2))
    assert (chexnet.data.size, chexnet.data.crop, chexnet.data.random_crop, chexnet.data.flip) == (224, 224, False,
                                                                                                 True)
    assert chexnet.select_best_by == "val_loss" and chexnet.data.rotation == 0
    assert load_config("chexnet", "official").data.protocol == "official"


@pytest.mark.parametrize("name, argument, backbone", [("baltruschat2019_resnet50", "scratch,large,meta", "resnet50"),
                                                      ("baltruschat2019_resnet38", "", "resnet38"),
                                                      ("baltruschat2019_resnet101", "", "resnet101")])
def test_baltruschat_best_rows_are_x_ray_specific_high_resolution_with_non_image_data(name, argument, backbone):
    """The preprint's best (ResNet-50) and the journal's (ResNet-38) and its depth study's ResNet-101: from random
    weights, 448² crops of 512² shards, age, sex and view fused, the weighted BCE, five re-samplings."""
    config = load_config(name, argument)
    assert (config.model.name, config.model.architecture, config.model.require_pretrained, config.model.frozen) == (
        backbone, "fusion", False, ())
    assert (config.data.size, config.data.crop, config.data.protocol, config.data.num_folds) == (512, 448,
                                                                                                 "resample", 5)
    assert config.losses.to_dict() == {"logits": {"loss": "weighted_bce", "weight": 1.0, "kwargs": {"mode": "batch"}}}
    assert load_config(name, "official").data.protocol == "official"
    with pytest.raises(ValueError, match="unknown config argument"):
        load_config("baltruschat2019_resnet38", "finetuned")  # no ImageNet ResNet-38 to fine-tune


def test_baltruschat_protocol_is_stated_and_chosen():
    """The paper's "5-fold re-sampling" as five random 70/10/20 patient splits by default; disjoint k-fold and the
    official split as the other two choices, at most one."""
    config = load_config("baltruschat2019_resnet50", "")
    assert (config.data.protocol, tuple(config.data.fractions), config.data.num_folds) == ("resample",
                                                                                         (0.7, 0.1, 0.2), 5)
    assert load_config("baltruschat2019_resnet50", "kfold,meta").data.protocol == "kfold"
    assert load_config("baltruschat2019_resnet50", "official").data.protocol == "official"
    with pytest.raises(ValueError, match="exclude each other"):
        load_config("baltruschat2019_resnet50", "kfold,official")


def _quoted_rows():
    """(file, argument, the published result its docstring quotes): every row that quotes a number."""
    from cxrjax.metrics import published

    table_1 = {result.model: result for result in published.GE_2018_TABLE_1}
    ablation = dict(zip(("bce", "focal", "asl", "class_aware_coupled", "class_aware_no_margin"),
                        published.CAPSTONE_LOSS_ABLATION))
    return [("ge2018_r18", "", table_1["R18"]), ("ge2018_r18_bl", "", table_1["R18-BL"]),
            ("ge2018_r18_fmsml", "", table_1["R18 + R18-F-MSML"]),
            *[("ge2018_r18_fmsml", strategy, result)
              for strategy, result in zip(("local2", "local_fixed2", ""), published.GE_2018_TABLE_2)],
            ("ge2018_d121", "", table_1["D121"]), ("ge2018_d121_bl", "", table_1["D121-BL"]),
            ("ge2018_d121_fmsml", "", table_1["D121 + D121-F-MSML"]),
            ("ge2018_vgg16_fmsml", "", table_1["R18 + VGG-F-MSML"]),
            ("ge2018_vgg16_fmsml", "", table_1["D121 + VGG-F-MSML"]),
            ("chexnet", "", published.CHEXNET), ("wang2017_resnet50", "", published.WANG_2017),
            ("capstone2023_swin_b", "", published.CAPSTONE_SWIN_B),
            ("capstone2023_swin_b", "image_split", published.CAPSTONE_SWIN_B),
            *[("capstone2023_swin_b", loss, result) for loss, result in ablation.items()],
            ("baltruschat2019_resnet38", "", published.BALTRUSCHAT_2019[0]),
            ("baltruschat2019_resnet38", "official", published.BALTRUSCHAT_2019[1])]


@pytest.mark.parametrize("name, argument, result", [
    pytest.param(name, argument, result, id=f"{name}:{argument or 'default'}:{result.auc}")
    for name, argument, result in _quoted_rows()])
def test_every_quoted_number_belongs_to_the_rows_own_protocol(name, argument, result):
    """A row's docstring quotes the number of the paper's experiment, and the report's comparability check, fed the
    row's own protocol on the real release, agrees that it applies: like-for-like for the official split, the same
    protocol for a random one (Wang 2017's 0.7451 once sat beside a random-split config). Where the source does not
    state its labels version (the capstone), that is the only reason left for "not comparable"."""
    from cxrjax.metrics import published

    module = load_module(name)
    assert f"{result.auc:.4f}".rstrip("0") in module.__doc__, (name, result.auc)
    config = module.get_config(argument or None)
    verdict, why = published.comparison(result, real_run(config.data.protocol, result.labels))
    if result.labels == published.UNSTATED:  # the capstone's: the protocol agrees, the labels version is unknown
        assert (verdict, why) == ("not comparable", "the source does not state its labels version")
    else:
        assert verdict == ("like-for-like" if result.split == published.OFFICIAL else "same protocol"), (verdict, why)


def _other_protocols_numbers():
    """(file, argument, a published result of another protocol than the row's)."""
    from cxrjax.metrics import published

    resampled, official = published.BALTRUSCHAT_2019
    return [("chexnet", "official", published.CHEXNET), ("wang2017_resnet50", "", published.CHEXNET),
            ("baltruschat2019_resnet38", "official", resampled), ("baltruschat2019_resnet38", "", official),
            ("baltruschat2019_resnet38", "kfold", official), ("baltruschat2019_resnet38", "kfold", resampled),
            ("ge2018_r18", "", published.WANG_2017), ("capstone2023_swin_b", "", published.GE_2018_TABLE_1[0])]


@pytest.mark.parametrize("name, argument, result", [
    pytest.param(name, argument, result, id=f"{name}:{argument or 'default'}:{result.auc}")
    for name, argument, result in _other_protocols_numbers()])
def test_a_number_of_another_protocol_is_not_comparable(name, argument, result):
    """The check that the previous test relies on can say no: a row run under another protocol than a number's
    (k-fold is neither the official split nor Baltruschat's re-sampling)."""
    from cxrjax.metrics import published

    config = load_config(name, argument or None)
    assert published.comparison(result, real_run(config.data.protocol, result.labels))[0] == "not comparable"
