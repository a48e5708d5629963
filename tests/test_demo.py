"""The demo end to end, small: synthetic release → prepare → train → eval → AUC table; then `cxrjax eval`."""

import csv
import json
import os

from cxrjax import cli
from cxrjax.data.findings import FINDINGS
from cxrjax.tools.demo import run_demo


def test_demo_runs_end_to_end(tmp_path, capsys):
    result = run_demo(str(tmp_path), num_images=300, num_epochs=1)
    printed = capsys.readouterr().out
    table_end = printed.strip().splitlines()[-2:]  # the mean row, then Ge 2018's four averages
    assert table_end[0].startswith("mean") and table_end[1].startswith("AUC ") and "W-AUC" in table_end[1]
    assert all(finding in printed for finding in FINDINGS)
    out = tmp_path / "run" / "eval" / "test"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["num_images"] == result["num_images"] > 0 and set(saved["auc"]) == set(FINDINGS)
    with open(out / "predictions.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Image Index", *FINDINGS] and len(rows) == saved["num_images"] + 1
    assert all(0.0 <= float(p) <= 1.0 for row in rows[1:] for p in row[1:])
    assert saved["bootstrap"]["resamples"] == 1000 and saved["operating_points"]  # CIs; thresholds from validation
    assert all((out / name).stat().st_size > 1000 for name in ("report.md", "roc.png", "pr.png"))
    assert os.path.exists(tmp_path / "run" / "metrics.jsonl")
    assert list((tmp_path / "run" / "tensorboard").iterdir())
    assert cli.main(["eval", "--workdir", str(tmp_path / "run"), "--split", "val"]) == 0
    assert (tmp_path / "run" / "eval" / "val" / "predictions.csv").exists()
