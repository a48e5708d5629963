"""Every paper config smoke-trains (two steps) and evaluates on the synthetic release; training strategies hold."""

import gc
import glob
import importlib.util
import os

import jax
import numpy as np
import pytest

from cxrjax import checkpoint, evaluate, sharding, train

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
CONFIG_FILES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(EXPERIMENTS, "*.py")))


def load_config(name: str, argument: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXPERIMENTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(argument)


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


def smoke(name, argument, data_dir, workdir, **overrides):
    config = load_config(name, argument)
    config.data.data_dir = data_dir
    for field, value in overrides.items():
        config.model[field] = value
    result = train.train_and_evaluate(config, workdir)
    assert result["step"] == 2
    metrics = evaluate.evaluate_workdir(workdir, "latest", "test", bootstrap=0)
    assert metrics["num_images"] > 0 and all(0 <= v <= 1 for v in metrics["auc"].values() if v is not None)
    return config


def test_every_experiment_file_is_listed_in_the_readme():
    with open(os.path.join(EXPERIMENTS, "README.md")) as f:
        readme = f.read()
    assert CONFIG_FILES and all(f"{name}.py" in readme for name in CONFIG_FILES)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_smoke_trains_and_evaluates(name, smoke_data, tmp_path):
    smoke(name, "smoke", smoke_data, str(tmp_path))


def _params(workdir):
    return checkpoint.load_variables(workdir, "latest")[3]["params"]


def test_local_fixed_freezes_the_streams(smoke_data, tmp_path):
    stage1 = str(tmp_path / "stage1")
    smoke("ge2018_r18_fmsml", "local1,smoke", smoke_data, stage1)
    stage2 = str(tmp_path / "stage2")
    config = smoke("ge2018_r18_fmsml", "local_fixed2,smoke", smoke_data, stage2, init_from=stage1)
    assert config.model.frozen == ("stream1", "stream2") and "fce" in config.losses
    before, after = _params(stage1), _params(stage2)
    for stream in ("stream1", "stream2"):
        assert all(jax.tree.leaves(jax.tree.map(np.array_equal, before[stream], after[stream])))
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, before["fce"], after["fce"])))


@pytest.mark.parametrize("variant", ["frozen", "meta"])
def test_baltruschat_variants(variant, smoke_data, tmp_path):
    config = smoke("baltruschat2019_resnet50", f"{variant},smoke", smoke_data, str(tmp_path))
    params = _params(str(tmp_path))
    if variant == "meta":
        assert config.model.architecture == "fusion" and params["fc"]["kernel"].shape[0] == 2048 + 5
    else:
        fresh = load_config("baltruschat2019_resnet50", "frozen,smoke")
        fresh.data.data_dir = smoke_data
        from cxrjax.run import build_run

        initial = build_run(fresh).state.params  # same seed: the initial backbone
        assert all(jax.tree.leaves(jax.tree.map(np.array_equal, initial["backbone"], params["backbone"])))
        assert not np.array_equal(initial["fc"]["kernel"], params["fc"]["kernel"])


def test_unknown_config_argument_is_refused():
    with pytest.raises(ValueError, match="unknown config argument"):
        load_config("ge2018_r18", "bogus")
