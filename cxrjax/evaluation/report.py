"""report.md with ROC and precision-recall plots: one evaluation's numbers beside the published ones.

The report is for a reader deciding whether a run is good: per-finding AUC, AP, D-AUC and N-AUC, each with its
patient-level 95% CI (as are the summary metrics), next to the published official-split per-finding AUCs, the
operating points at thresholds chosen on validation, the summary metrics next to the papers' averages, and for each
published number whether the comparison is like-for-like (see `cxrjax.metrics.published`). Figures are drawn on a bare
`matplotlib.figure.Figure` (Agg canvas): no display, no pyplot global state.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from cxrjax.data.findings import FINDINGS
from cxrjax.metrics import published
from cxrjax.metrics import thresholds as thresholds_lib

# 14 hues in seven look-alike pairs (red/maroon, blue/navy, green/olive, orange/brown, magenta/purple, teal/cyan,
# black/grey); findings alternate solid and dashed so the two of a pair never share a line style.
_COLOURS = ("#e6194b", "#000075", "#4363d8", "#800000", "#3cb44b", "#808000", "#f58231", "#911eb4", "#f032e6",
            "#42d4f4", "#469990", "#9a6324", "#000000", "#808080")
_STYLES = ("-", "--")
_OPERATING_RULES = {"youden": "Youden's J (max sensitivity + specificity − 1)", "f1": "max F1"}


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _with_ci(value: float | None, interval: dict | None) -> str:
    if interval is None or interval["low"] is None:
        return _number(value)
    return f"{_number(value)} [{_number(interval['low'])}, {_number(interval['high'])}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def _summary(metrics: dict) -> list[str]:
    ci = metrics.get("bootstrap") or {}
    rows = [[name, _with_ci(metrics[key], ci.get(key))] for name, key in (
        ("mean AUC", "mean_auc"),
        ("W-AUC (Ge: Σ prevalence · AUC, unnormalised)", "w_auc"),
        ("W-AUC normalised (÷ Σ prevalence)", "w_auc_normalized"),
        ("mean D-AUC (finding vs other findings)", "mean_d_auc"),
        ("mean N-AUC (finding vs No Finding)", "mean_n_auc"),
        ("mAP", "map"))]
    return _table(["metric", "value [95% CI]" if ci else "value"], rows)


def _per_finding(metrics: dict) -> list[str]:
    ci = metrics.get("bootstrap") or {}
    columns = published.PER_FINDING_OFFICIAL.values()
    suffix = " [95% CI]" if ci else ""
    header = ["finding", "positives", *(name + suffix for name in ("AUC", "AP", "D-AUC", "N-AUC")),
              *published.PER_FINDING_OFFICIAL]
    keys = ("auc", "ap", "d_auc", "n_auc")
    rows = [[finding, str(metrics["positives"][finding]),
             *(_with_ci(metrics[key][finding], ci.get(key, {}).get(finding)) for key in keys),
             *(_number(c.per_finding_auc[finding]) for c in columns)] for finding in FINDINGS]
    rows.append(["**mean**", "", *(_with_ci(metrics[key], ci.get(key)) for key in ("mean_auc", "map", "mean_d_auc",
                                                                                    "mean_n_auc")),
                 *(_number(c.auc) for c in columns)])
    return _table(header, rows)


def _operating_points(labels, probabilities, thresholds: dict | None) -> list[str]:
    if not thresholds:
        return ["No thresholds were given (they are chosen on the validation split), so no operating points."]
    lines = []
    for rule, description in _OPERATING_RULES.items():
        points = thresholds_lib.apply_thresholds(labels, probabilities, thresholds.get(rule, {}))
        rows = []
        for finding in FINDINGS:
            point = points[finding]
            if point is None:
                rows.append([finding, "none", *["n/a"] * 9])
                continue
            rows.append([finding, _number(point["threshold"]), *(str(point[k]) for k in ("tp", "fp", "tn", "fn")),
                         *(_number(point[k], 3) for k in ("sensitivity", "specificity", "ppv", "npv", "f1"))])
        lines += [f"### Thresholds by {description}", "",
                  *_table(["finding", "threshold", "TP", "FP", "TN", "FN", "sensitivity", "specificity", "PPV",
                           "NPV", "F1"], rows), ""]
    return lines


def _published_averages(split: str | None) -> list[str]:
    results = (*published.GE_2018_TABLE_1, *published.GE_2018_TABLE_3, *published.CAPSTONE_LOSS_ABLATION,
               *published.PER_FINDING_OFFICIAL.values(),
               *published.BALTRUSCHAT_2019, published.REFERENCE_REPRODUCTION)
    rows = [[r.model, r.source, r.split, _number(r.auc), _number(r.w_auc), _number(r.d_auc), _number(r.n_auc),
             _number(r.map), published.comparable(r, split), r.note] for r in results]
    return _table(["model", "source", "split", "AUC", "W-AUC", "D-AUC", "N-AUC", "mAP", "vs this run", "note"], rows)


def _legend_order(values: dict[str, float | None]) -> list[str]:
    """Findings by decreasing value (undefined last), so the legend reads as a ranking."""
    return sorted(FINDINGS, key=lambda f: -np.inf if values[f] is None else -values[f])


def _plot(path: str, curves: dict[str, tuple[np.ndarray, np.ndarray]], labels: dict[str, str], order: list[str], *,
          xlabel: str, ylabel: str, title: str, diagonal: bool) -> None:
    figure = Figure(figsize=(11, 7), dpi=120, layout="constrained")
    axes = figure.subplots()
    for finding in order:
        if finding not in curves:
            continue
        k = FINDINGS.index(finding)
        x, y = curves[finding]
        axes.plot(x, y, color=_COLOURS[k], linestyle=_STYLES[k % 2], linewidth=1.8, label=labels[finding])
    if diagonal:
        axes.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="chance")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=10, frameon=False, handlelength=3)
    figure.savefig(path)


def plot_roc(path: str, labels, probabilities, metrics: dict, title: str) -> None:
    """ROC curve of every finding; the legend gives AUC and its 95% CI, best finding first."""
    intervals = (metrics.get("bootstrap") or {}).get("auc", {})
    curves, names = {}, {}
    for k, finding in enumerate(FINDINGS):
        if metrics["auc"][finding] is None:
            continue
        fpr, tpr, _ = roc_curve(labels[:, k], probabilities[:, k])
        curves[finding] = (fpr, tpr)
        interval = intervals.get(finding)
        ci = f" [{interval['low']:.3f}, {interval['high']:.3f}]" if interval and interval["low"] is not None else ""
        names[finding] = f"{finding}  {metrics['auc'][finding]:.3f}{ci}"
    _plot(path, curves, names, _legend_order(metrics["auc"]), xlabel="false positive rate (1 − specificity)",
          ylabel="true positive rate (sensitivity)", title=f"{title}: ROC, AUC [95% CI]", diagonal=True)


def plot_pr(path: str, labels, probabilities, metrics: dict, title: str) -> None:
    """Precision-recall curve of every finding; the legend gives AP and the prevalence (a random model's AP)."""
    curves, names = {}, {}
    for k, finding in enumerate(FINDINGS):
        if metrics["ap"][finding] is None:
            continue
        precision, recall, _ = precision_recall_curve(labels[:, k], probabilities[:, k])
        curves[finding] = (recall, precision)
        names[finding] = f"{finding}  AP {metrics['ap'][finding]:.3f} (prevalence {metrics['prevalence'][finding]:.3f})"
    _plot(path, curves, names, _legend_order(metrics["ap"]), xlabel="recall (sensitivity)",
          ylabel="precision (PPV)", title=f"{title}: precision-recall, AP", diagonal=False)


def write_report(out_dir: str, labels, probabilities, metrics: dict, thresholds: dict | None, title: str, *,
                 split: str | None = None) -> dict[str, str]:
    """Writes out_dir/{report.md, roc.png, pr.png}; returns their paths.

    `metrics` is `cxrjax.metrics.full_metrics(labels, probabilities, ...)`; `thresholds` the validation split's
    `cxrjax.metrics.thresholds.choose_thresholds` (None: no operating points); `split` the split protocol the images
    come from ("official", "random", ...), which says what the published numbers can be compared with.
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in ("report.md", "roc.png", "pr.png")}
    plot_roc(paths["roc.png"], labels, probabilities, metrics, title)
    plot_pr(paths["pr.png"], labels, probabilities, metrics, title)

    bootstrap = metrics.get("bootstrap")
    ci_text = (f"95% CIs: percentile bootstrap over {bootstrap['resamples']} resamples of the "
               f"{bootstrap['num_patients']:,} patients (seed {bootstrap['seed']})" if bootstrap
               else "no confidence intervals (no patient ids, or bootstrap off)")
    comparison = published.comparable(published.CAPSTONE_SWIN_B, split)
    lines = [
        f"# {title}", "",
        f"{metrics['num_images']:,} images, {metrics['num_no_finding']:,} with No Finding; split protocol: "
        f"{split or 'not stated'}. {ci_text}.", "",
        "## Summary", "", *_summary(metrics), "",
        "## Per finding", "",
        "D-AUC: images with the finding against images with other findings only; N-AUC: against No Finding images. "
        f"The last four columns are published per-finding AUCs on the **official** test split; against this run: "
        f"**{comparison}**.", "",
        *_per_finding(metrics), "",
        "## Operating points", "",
        "Thresholds chosen on the validation split, applied here; an image is positive when its probability is at "
        "least the threshold.", "",
        *_operating_points(labels, probabilities, thresholds),
        "## Published averages", "",
        "Official-split numbers share their test images (like-for-like); random splits share only the protocol.", "",
        *_published_averages(split), "",
        "## Curves", "", "![ROC curves](roc.png)", "", "![Precision-recall curves](pr.png)", "",
    ]
    with open(paths["report.md"], "w") as f:
        f.write("\n".join(lines))
    return {"report": paths["report.md"], "roc": paths["roc.png"], "pr": paths["pr.png"]}
