"""The commands a researcher meets first: `--help` that lists the config fields, and a missing-shards error that
says what is prepared and what to run. Driven as a user would (subprocess) where the output is the point."""

import argparse
import os
import subprocess
import sys

import pytest

from cxrjax import cli
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


def test_a_packaged_config_name_resolves_to_the_shipped_file():
    shipped = os.path.realpath(os.path.join(ROOT, "experiments", "ge2018_r18_fmsml.py"))  # editable: the same file
    result = _cxrjax("train", "--config=cxrjax:experiments/ge2018_r18_fmsml.py:local1", "--help")
    assert result.returncode == 0 and f"values of {shipped}:local1" in result.stdout
    assert "model.architecture = 'fmsml'" in result.stdout
    missing = _cxrjax("train", "--config", "cxrjax:experiments/ge2018_r19.py", "--workdir", "unused")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and missing.stderr.startswith(
        "cxrjax train: error: no config experiments/ge2018_r19.py in the installed package; its paper configs are "
        "cxrjax:experiments/X.py for X in baltruschat2019_resnet101, ")
    assert " ge2018_r18, " in missing.stderr and "__init__" not in missing.stderr


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, from the parser `cxrjax` itself builds."""
    [commands] = [action for action in cli._parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_every_option_of_every_subcommand_has_a_help_text():
    subcommands = _subcommands()
    assert set(cli._CONFIG_COMMANDS) < set(subcommands) and len(subcommands) == 11
    [commands] = [action for action in cli._parser()._actions if isinstance(action, argparse._SubParsersAction)]
    assert all(choice.help for choice in commands._choices_actions)  # the one-line summaries of `cxrjax --help`
    missing = [f"{name} {action.dest}" for name, parser in subcommands.items() for action in parser._actions
               if not isinstance(action, argparse._HelpAction) and action.help in (None, "", argparse.SUPPRESS)]
    assert missing == []
    for command in cli._CONFIG_COMMANDS:  # absl flags, not argparse: train's and ablate's own --help shows them
        _, flag_values = cli._define_config_flags([f"cxrjax {command}"], cli._COMMAND_FLAGS[command])
        assert sorted(flag_values) == sorted({"config", "workdir", *{"train": ["accept_config_change"],
                                                                     "ablate": ["loss", "split"]}[command]})
        assert all(flag_values[name].help.strip() for name in flag_values)


def test_every_subcommand_help_exits_0_and_shows_each_option():
    for command, parser in _subcommands().items():
        result = _cxrjax(command, "--help")
        assert result.returncode == 0 and result.stderr == "", command
        assert result.stdout.startswith(f"usage: cxrjax {command}"), command
        if command in cli._CONFIG_COMMANDS:
            _, flag_values = cli._define_config_flags([f"cxrjax {command}"], cli._COMMAND_FLAGS[command])
            options = [f"  --{name}: " for name in flag_values]
        else:
            assert parser.description in " ".join(result.stdout.split()), command  # what the command does
            options = [action.option_strings[-1] if action.option_strings else action.metavar or action.dest
                       for action in parser._actions]
        assert [option for option in options if option not in result.stdout] == [], command


def test_top_level_help_names_a_first_command():
    result = _cxrjax("--help")
    assert result.returncode == 0 and "First try `cxrjax demo`" in result.stdout


def _prepared(data_dir, name: str, version: str = shard_format.VERSION, finished: bool = True) -> None:
    """A prepared folder as readers see it: TFDS's dataset_info.json, and the marker of a finished prepare (the
    current format's; older formats had none)."""
    folder = os.path.join(data_dir, shard_format.DATASET, name, version)
    os.makedirs(folder)
    open(os.path.join(folder, "dataset_info.json"), "w").close()
    if finished and version == shard_format.VERSION:
        open(os.path.join(folder, shard_format.PREPARED_MARKER), "w").close()


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
    _prepared(data_dir, "128", finished=False)  # TFDS's folder without the marker: a prepare killed before its end
    with pytest.raises(FileNotFoundError, match=r"holds an interrupted prepare \(no prepare_complete.json\): "
                                                r"run `cxrjax prepare .* --size 128` again"):
        shard_format.open_shards(shard_format.builder_dir(data_dir, 128))
