"""`cxrjax folds`: mean ± sd per finding over k-fold runs."""

import json

import numpy as np

from cxrjax import cli
from cxrjax.data.findings import FINDINGS


def test_folds_mean_and_sample_sd(tmp_path, capsys):
    rng = np.random.default_rng(0)
    values = rng.uniform(0.6, 0.9, (5, 14))
    workdirs = []
    for k, row in enumerate(values):
        out = tmp_path / f"fold{k}" / "eval" / "test"
        out.mkdir(parents=True)
        auc = dict(zip(FINDINGS, row.tolist()))
        if k == 0:
            auc["Hernia"] = None  # undefined in one fold
        (out / "metrics.json").write_text(json.dumps({"auc": auc, "mean_auc": float(row.mean())}))
        workdirs.append(str(tmp_path / f"fold{k}"))
    output = tmp_path / "folds.json"
    assert cli.main(["folds", *workdirs, "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert abs(result["auc"]["Mass"]["mean"] - values[:, 4].mean()) < 1e-12
    assert abs(result["auc"]["Mass"]["sd"] - values[:, 4].std(ddof=1)) < 1e-12
    assert result["auc"]["Hernia"]["n"] == 4 and abs(result["auc"]["Hernia"]["mean"] - values[1:, 13].mean()) < 1e-12
    assert "±" in capsys.readouterr().out
    assert cli.main(["folds", str(tmp_path / "nowhere")]) == 1
