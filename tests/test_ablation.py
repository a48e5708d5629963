"""The loss ablation: one run per loss on the same data and seed, compared side by side."""

import json
import os

import pytest

from cxrjax import cli
from cxrjax.data.findings import FINDINGS


def test_ablation_trains_one_run_per_loss_and_tabulates(prepared_shards, tmp_path, capsys):
    config_file = tmp_path / "config.py"
    config_file.write_text("from cxrjax.configs import default\n\ndef get_config():\n"
                           "    c = default.get_config()\n"
                           f"    c.data.data_dir, c.data.size, c.data.crop = {prepared_shards[0]!r}, 32, 28\n"
                           "    c.batch_size, c.eval_batch_size, c.num_epochs = 32, 64, 1\n    return c\n")
    workdir = tmp_path / "ablation"
    specs = ["bce", "class_aware:margin=0"]
    argv = ["ablate", f"--config={config_file}", f"--workdir={workdir}"] + [f"--loss={s}" for s in specs]
    assert cli.main(argv) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].split()[1:] == specs and len(table) == 16 and table[-1].startswith("mean")
    results = json.loads((workdir / "ablation.json").read_text())
    assert list(results) == specs and all(set(r["auc"]) == set(FINDINGS) for r in results.values())
    assert results["bce"]["auc"] != results["class_aware:margin=0"]["auc"]  # the loss really changed
    saved = json.loads(open(workdir / "class_aware-margin=0" / "eval" / "test" / "metrics.json").read())
    assert saved["auc"] == results["class_aware:margin=0"]["auc"]
    assert os.path.isdir(workdir / "bce" / "checkpoints")


def test_a_bad_loss_spec_fails_before_training(prepared_shards, tmp_path, capsys):
    config_file = tmp_path / "config.py"
    config_file.write_text("from cxrjax.configs import default\n\ndef get_config():\n"
                           "    return default.get_config()\n")
    argv = ["ablate", f"--config={config_file}", f"--workdir={tmp_path / 'w'}", "--loss=bce", "--loss=focal:gama=2"]
    assert cli.main(argv) == 1
    assert "gama" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("spec,name", [("class_aware:margin=0,decouple=false", "class_aware-margin=0-decouple=false")])
def test_run_names_are_folder_safe(spec, name):
    from cxrjax.tools.ablation import run_name

    assert run_name(spec) == name
