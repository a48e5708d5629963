"""The commands a researcher meets first: `--help` that lists the config fields, and a missing-shards error that
says what is prepared and what to run. Driven as a user would (subprocess) where the output is the point."""

import os
import subprocess
import sys

import pytest

from cxrjax.configs import default, fields
from cxrjax.data import shard_format

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cxrjax(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cxrjax.cli", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_train_help_lists_every_config_field_with_its_default_and_comment():
    result = _cxrjax("train", "--help")
    assert result.returncode == 0 and result.stderr == ""
    out = result.stdout
    assert out.startswith("usage: cxrjax train --config FILE")
    base = default.get_config()
    for field in fields.base_fields():
        value = base
        for part in field.name.split("."):
            value = value[part]
        value = value.to_dict() if hasattr(value, "to_dict") else value
        assert f"  {field.name} = {value!r}" in out, field.name
    assert "data.size = 256" in out and "shard image side" in out  # a value and its comment from default.py
    assert [line for line in out.splitlines() if line in ("data", "model", "losses", "optimizer", "run")] == [
        "data", "model", "losses", "optimizer", "run"]


def test_help_after_a_config_shows_that_configs_values():
    result = _cxrjax("train", "--config", "experiments/ge2018_r18_fmsml.py:local1", "--help")
    assert result.returncode == 0
    assert "values of experiments/ge2018_r18_fmsml.py:local1" in result.stdout
    assert "data.protocol = 'random'" in result.stdout and "model.architecture = 'fmsml'" in result.stdout
    assert "'fce'" not in result.stdout  # Local stage 1 trains without the bilinear head's loss
    ablate = _cxrjax("ablate", "-h", "--config=cxrjax/configs/demo.py")
    assert ablate.returncode == 0 and ablate.stdout.startswith("usage: cxrjax ablate")
    missing = _cxrjax("train", "--config", "no_such_config.py", "--help")
    assert missing.returncode == 1 and missing.stderr.strip() == "cxrjax train: error: config file no_such_config.py " \
                                                                  "not found"


def test_top_level_help_names_a_first_command():
    result = _cxrjax("--help")
    assert result.returncode == 0 and "First try `cxrjax demo`" in result.stdout


def _prepared(data_dir, name: str, version: str = shard_format.VERSION) -> None:
    folder = os.path.join(data_dir, shard_format.DATASET, name, version)
    os.makedirs(folder)
    open(os.path.join(folder, "dataset_info.json"), "w").close()


def test_missing_shards_name_what_is_prepared_and_the_command_that_fits(tmp_path):
    data_dir = str(tmp_path / "data")
    with pytest.raises(FileNotFoundError) as nothing:
        shard_format.open_shards(shard_format.builder_dir(data_dir, 64))
    assert str(nothing.value).endswith(f"nothing is prepared there: run `cxrjax prepare --source RELEASE --data-dir "
                                       f"{data_dir} --size 64` (or set --config.data.data_dir)")
    _prepared(data_dir, "256")
    _prepared(data_dir, "512_labels2017")
    with pytest.raises(FileNotFoundError) as other_sizes:
        shard_format.open_shards(shard_format.builder_dir(data_dir, 64, "2017"))
    message = str(other_sizes.value)
    assert "\n" not in message and message.startswith(f"no prepared shards of size 64 with 2017 labels in {data_dir}")
    assert ("prepared there: --config.data.size=256 --config.data.labels=v2020, --config.data.size=512 "
            "--config.data.labels=2017 (use one)") in message
    assert message.endswith(f"`cxrjax prepare --source RELEASE --data-dir {data_dir} --size 64 --labels 2017`")
    old = str(tmp_path / "old")
    _prepared(old, "64", "1.1.0")
    with pytest.raises(FileNotFoundError, match=r"only in an older format \(64 in format 1.1.0\): run `cxrjax "
                                                r"prepare .* --size 64` again"):
        shard_format.open_shards(shard_format.builder_dir(old, 64))
