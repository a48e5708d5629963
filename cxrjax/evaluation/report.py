"""report.md with ROC and precision-recall plots: one evaluation's numbers beside the published ones.

The report is for a reader deciding whether a run is good: per-finding AUC, AP, D-AUC and N-AUC, each with its
patient-level 95% CI (as are the summary metrics), next to the published official-split per-finding AUCs, the
operating points at thresholds chosen on validation, the summary metrics next to the papers' averages, and for each
published number whether it can be compared with this run at all: only a run on the real release, the same split and
labels version can (`cxrjax.metrics.published.comparison`), and a synthetic or partial run's report says that no
published number applies. The figures give one small panel per finding (14 curves in one panel are unreadable), with
the validation operating points on the curves and, for precision-recall, the prevalence a random classifier reaches.
They are drawn on a bare `matplotlib.figure.Figure` (Agg canvas): no display, no pyplot global state.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.metrics import precision_recall_curve, roc_curve

from cxrjax import metrics as metrics_lib
from cxrjax.data.findings import FINDINGS
from cxrjax.metrics import published
from cxrjax.metrics import thresholds as thresholds_lib
from cxrjax.metrics.published import Measured

# 14 hues, one per finding, the same in both figures; each panel holds one curve, so look-alike pairs (red/maroon,
# blue/navy, ...) cannot be confused.
_COLOURS = ("#e6194b", "#000075", "#4363d8", "#800000", "#3cb44b", "#808000", "#f58231", "#911eb4", "#f032e6",
            "#42d4f4", "#469990", "#9a6324", "#000000", "#808080")
_OPERATING_RULES = {"youden": "Youden's J (max sensitivity + specificity − 1)", "f1": "max F1",
                    "torchxrayvision": "the imported model's own operating points (torchxrayvision's op_threshs)"}
_MARKER_LABELS = {"youden": "Youden point (threshold chosen\non validation: max sensitivity\n+ specificity − 1)",
                  "f1": "F1 point (threshold chosen\non validation: max F1)",
                  "torchxrayvision": "the imported model's own\noperating point"}
# Markers that stand out on every curve colour: gold and white faces, black edges, three shapes; the F1 diamond is
# drawn smaller and on top, so where both thresholds give the same point it sits inside the gold disc.
_MARKER_STYLES = {"youden": {"marker": "o", "markersize": 10, "markerfacecolor": "#ffd700", "markeredgecolor": "black"},
                  "f1": {"marker": "D", "markersize": 5.5, "markerfacecolor": "white", "markeredgecolor": "black"},
                  "torchxrayvision": {"marker": "s", "markersize": 6, "markerfacecolor": "#00bfff",
                                      "markeredgecolor": "black"}}

_CHANCE = {"color": "#999999", "linestyle": ":", "linewidth": 1.2}
_BASELINE = {"color": "#555555", "linestyle": "--", "linewidth": 1.2}
_GRID = (3, 5)  # rows, columns: 14 findings and the key


def _rules(thresholds: dict | None) -> list[str]:
    """The threshold rules a run has, in the figures' and tables' order."""
    return [rule for rule in _OPERATING_RULES if rule in (thresholds or {})]


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def _summary(metrics: dict) -> list[str]:
    ci = metrics.get("bootstrap") or {}
    rows = [[name, metrics_lib.format_with_ci(metrics[key], ci.get(key))] for name, key in (
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
             *(metrics_lib.format_with_ci(metrics[key][finding], ci.get(key, {}).get(finding)) for key in keys),
             *(_number(c.per_finding_auc[finding]) for c in columns)] for finding in FINDINGS]
    means = ("mean_auc", "map", "mean_d_auc", "mean_n_auc")
    rows.append(["**mean**", "", *(metrics_lib.format_with_ci(metrics[key], ci.get(key)) for key in means),
                 *(_number(c.auc) for c in columns)])
    return _table(header, rows)


def _operating_points(labels, probabilities, thresholds: dict | None) -> list[str]:
    if not thresholds:
        return ["No thresholds were given (they are chosen on the validation split), so no operating points."]
    lines = []
    for rule in _rules(thresholds):
        description = _OPERATING_RULES[rule]
        points = thresholds_lib.apply_thresholds(labels, probabilities, thresholds[rule])
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


def _against_radiologists(grade: dict | None) -> list[str]:
    """The section grading the images with radiologist-adjudicated labels (`expert_labels.grade`), if any."""
    if not grade:
        return []
    rows = []
    for finding, entry in grade["findings"].items():
        if not entry["scored"]:
            rows.append([finding, f"not scored: {entry['reason']}", *["n/a"] * 4])
            continue
        rows.append([finding, ", ".join(entry["from"]) + f" ({entry['reading']})",
                     f"{entry['expert_positives']} / {entry['nih_positives']}", _number(entry["agreement"], 3),
                     metrics_lib.format_with_ci(entry["auc_expert"], entry["auc_expert_ci"]),
                     metrics_lib.format_with_ci(entry["auc_nih"], entry["auc_nih_ci"])])
    return ["## Against radiologists", "",
            f"{grade['num_images']:,} images of this split ({grade['num_patients']:,} patients) have labels "
            f"adjudicated by three radiologists ({grade['citation']}; `{grade['labels']}`, Set Id {grade['split']}). "
            "Each expert finding is scored with the largest probability of the findings it maps to, and graded "
            "against the radiologists and against NIH's text-mined labels of the same images (positive when any of "
            "those findings is); the mapping is `cxrjax/evaluation/expert_labels.py`'s. 95% CIs: patient-level "
            f"bootstrap, {grade['bootstrap']} resamples.", "",
            *_table(["expert finding", "scored from", "positives (radiologists / NIH)", "agreement of the labels",
                     "AUC vs radiologists", "AUC vs NIH, same images"], rows), ""]


def _published_averages(measured: Measured | None, with_reasons: bool) -> list[str]:
    results = (*published.GE_2018_TABLE_1, *published.GE_2018_TABLE_3, *published.CAPSTONE_LOSS_ABLATION,
               *published.PER_FINDING_OFFICIAL.values(),
               *published.BALTRUSCHAT_2019, published.REFERENCE_REPRODUCTION)
    rows = [[r.model, r.source, r.split, r.labels, _number(r.auc), _number(r.w_auc), _number(r.d_auc),
             _number(r.n_auc), _number(r.map), _verdict(r, measured, with_reasons), r.note] for r in results]
    return _table(["model", "source", "split", "labels", "AUC", "W-AUC", "D-AUC", "N-AUC", "mAP", "vs this run",
                   "note"], rows)


def _verdict(result: published.Published, measured: Measured | None, with_reason: bool) -> str:
    """The comparison's verdict in bold, with its reason unless that is the run-wide one stated at the top."""
    verdict, why = published.comparison(result, measured)
    return f"**{verdict}**" + (f" ({why})" if with_reason else "")


def operating_markers(labels, probabilities,
                      thresholds: dict | None) -> dict[str, dict[str, dict[str, tuple[float, float] | None]]]:
    """{rule: {finding: {"roc": (FPR, TPR), "pr": (recall, precision)}}}: where each validation threshold puts this
    split on its ROC and precision-recall curves, so the figures show the operating points the tables give. A point
    is None where the finding has no threshold or a rate is undefined here (no positives, no negatives, or no image
    called positive)."""
    markers = {}
    for rule in _rules(thresholds):
        points = thresholds_lib.apply_thresholds(labels, probabilities, thresholds[rule])
        markers[rule] = {}
        for finding in FINDINGS:
            point = points[finding]
            tpr, specificity, ppv = ((None,) * 3 if point is None
                                     else (point["sensitivity"], point["specificity"], point["ppv"]))
            markers[rule][finding] = {"roc": None if None in (tpr, specificity) else (1.0 - specificity, tpr),
                                      "pr": None if None in (tpr, ppv) else (tpr, ppv)}
    return markers


def _grid(title: str, xlabel: str, ylabel: str) -> tuple[Figure, dict[str, Axes], Axes]:
    """A figure of one small square panel per finding (canonical order, so a finding sits at the same place in the
    ROC and PR figures) with shared axes, and a last panel for the key: one panel of 14 curves is unreadable."""
    figure = Figure(figsize=(16, 11), dpi=100, layout="constrained")
    figure.get_layout_engine().set(h_pad=0.15)
    grid = figure.subplots(*_GRID, sharex=True, sharey=True)
    panels = dict(zip(FINDINGS, grid.flat))
    for slot, axes in enumerate(panels.values()):
        axes.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xticks=(0, 0.25, 0.5, 0.75, 1), yticks=(0, 0.25, 0.5, 0.75, 1))
        axes.set_box_aspect(1)
        axes.grid(alpha=0.3)
        axes.tick_params(labelsize=9)
        if slot + _GRID[1] >= len(FINDINGS):  # nothing below it: it shows the x ticks
            axes.tick_params(labelbottom=True)
    key = grid.flat[len(FINDINGS)]
    key.axis("off")
    figure.suptitle(title, fontsize=15)
    figure.supxlabel(xlabel, fontsize=12)
    figure.supylabel(ylabel, fontsize=12)
    return figure, panels, key


def _undefined(axes: Axes, finding: str, metric: str, metrics: dict) -> None:
    """The panel of a finding with a single class on this split: it says so, where a curve would be."""
    reason = "no positives" if metrics["positives"][finding] == 0 else "no negatives"
    axes.set_title(f"{finding}\n{metric} undefined", fontsize=10.5)
    axes.text(0.5, 0.5, f"{reason} in this split:\nno curve", transform=axes.transAxes, ha="center", va="center",
              fontsize=10, color="#555555")


def _mark(axes: Axes, markers: dict, finding: str, curve: str) -> None:
    for rule in markers:
        style, point = _MARKER_STYLES[rule], markers[rule][finding][curve]
        if point is not None:
            axes.plot([point[0]], [point[1]], linestyle="none", zorder=3, clip_on=False, gid=rule, **style)


def _key(key: Axes, curve_label: str, reference: tuple[str, dict], thresholds: dict | None) -> None:
    label, style = reference
    handles = [Line2D([], [], color="#555555", linewidth=1.8, label=curve_label), Line2D([], [], label=label, **style),
               *(Line2D([], [], linestyle="none", label=_MARKER_LABELS[rule], **_MARKER_STYLES[rule])
                 for rule in _rules(thresholds))]
    key.legend(handles=handles, loc="center", fontsize=10, frameon=False, handlelength=2, labelspacing=1.1)


def roc_figure(labels, probabilities, metrics: dict, thresholds: dict | None, title: str) -> Figure:
    """One ROC panel per finding, titled with its AUC and 95% CI, with chance and the validation operating points."""
    intervals = (metrics.get("bootstrap") or {}).get("auc", {})
    markers = operating_markers(labels, probabilities, thresholds)
    figure, panels, key = _grid(f"{title}: ROC per finding, AUC [95% CI]", "false positive rate (1 − specificity)",
                                "true positive rate (sensitivity)")
    for k, (finding, axes) in enumerate(panels.items()):
        axes.plot([0, 1], [0, 1], gid="chance", **_CHANCE)
        auc = metrics["auc"][finding]
        if auc is None:
            _undefined(axes, finding, "AUC", metrics)
            continue
        fpr, tpr, _ = roc_curve(labels[:, k], probabilities[:, k])
        axes.plot(fpr, tpr, color=_COLOURS[k], linewidth=1.8)
        _mark(axes, markers, finding, "roc")
        interval = intervals.get(finding)
        ci = f" [{interval['low']:.3f}, {interval['high']:.3f}]" if interval and interval["low"] is not None else ""
        axes.set_title(f"{finding}\nAUC {auc:.3f}{ci}", fontsize=10.5)
    _key(key, "ROC curve", ("chance (random classifier)", _CHANCE), thresholds)
    return figure


def pr_figure(labels, probabilities, metrics: dict, thresholds: dict | None, title: str) -> Figure:
    """One precision-recall panel per finding, titled with its AP and prevalence, with the prevalence baseline (a
    random classifier's precision, the AP to beat) and the validation operating points."""
    markers = operating_markers(labels, probabilities, thresholds)
    figure, panels, key = _grid(f"{title}: precision-recall per finding, AP and prevalence", "recall (sensitivity)",
                                "precision (PPV)")
    for k, (finding, axes) in enumerate(panels.items()):
        ap = metrics["ap"][finding]
        if ap is None:
            _undefined(axes, finding, "AP", metrics)
            continue
        prevalence = metrics["prevalence"][finding]
        axes.axhline(prevalence, gid="prevalence", **_BASELINE)
        precision, recall, _ = precision_recall_curve(labels[:, k], probabilities[:, k])
        axes.plot(recall, precision, color=_COLOURS[k], linewidth=1.8)
        _mark(axes, markers, finding, "pr")
        axes.set_title(f"{finding}\nAP {ap:.3f}, prevalence {prevalence:.3f}", fontsize=10.5)
    _key(key, "precision-recall curve", ("prevalence: a random\nclassifier's precision", _BASELINE), thresholds)
    return figure


def _data_line(metrics: dict, measured: Measured | None) -> str:
    facts = measured or Measured()
    shards = ("not stated" if facts.num_images is None else f"{facts.num_images:,} images" + (
        "" if facts.num_official_test is None else f", {facts.num_official_test:,} on the official test list"))
    return (f"{metrics['num_images']:,} images, {metrics['num_no_finding']:,} with No Finding; split protocol: "
            f"{facts.protocol or 'not stated'} (split evaluated: {facts.split or 'not stated'}); labels: "
            f"{facts.labels or 'not stated'}; shards: {shards}.")


def write_report(out_dir: str, labels, probabilities, metrics: dict, thresholds: dict | None, title: str, *,
                 measured: Measured | None = None) -> dict[str, str]:
    """Writes out_dir/{report.md, roc.png, pr.png}; returns their paths.

    `metrics` is `cxrjax.metrics.full_metrics(labels, probabilities, ...)`; `thresholds` the validation split's
    `cxrjax.metrics.thresholds.choose_thresholds` (None: no operating points); `measured` what the images are (the
    data, split and labels version), which decides what each published number can be compared with (None: unknown).
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in ("report.md", "roc.png", "pr.png")}
    roc_figure(labels, probabilities, metrics, thresholds, title).savefig(paths["roc.png"])
    pr_figure(labels, probabilities, metrics, thresholds, title).savefig(paths["pr.png"])

    bootstrap = metrics.get("bootstrap")
    ci_text = (f"95% CIs: percentile bootstrap over {bootstrap['resamples']} resamples of the "
               f"{bootstrap['num_patients']:,} patients (seed {bootstrap['seed']})" if bootstrap
               else "no confidence intervals (no patient ids, or bootstrap off)")
    mismatch = published.run_mismatch(measured)
    if mismatch is None:
        columns = ", ".join(f"{name} {_verdict(result, measured, with_reason=True)}"
                            for name, result in published.PER_FINDING_OFFICIAL.items())
        verdicts, legend = [], [
            "vs this run: **like-for-like**: the real release's official test images, scored against the same labels "
            "version; **same protocol**: random patient-level splits of the real release, same labels, other test "
            "patients; **not comparable**: a fact differs, or the source does not state it; **unknown**: a fact "
            "of this run is not stated.", ""]
    else:
        columns = "**not comparable** (no published number applies, above)"
        verdicts, legend = [f"**No published number applies to this run**: {mismatch}.", ""], []
    lines = [
        f"# {title}", "",
        f"{_data_line(metrics, measured)} {ci_text}.", "",
        *verdicts,
        "## Summary", "", *_summary(metrics), "",
        "## Per finding", "",
        "D-AUC: images with the finding against images with other findings only; N-AUC: against No Finding images. "
        f"The last four columns are published per-finding AUCs on the **official** test split; against this run: "
        f"{columns}.", "",
        *_per_finding(metrics), "",
        *_against_radiologists(metrics.get("expert")),
        "## Operating points", "",
        "Thresholds chosen on the validation split, applied here; an image is positive when its probability is at "
        "least the threshold. The figures mark both points on every finding's curves.", "",
        *_operating_points(labels, probabilities, thresholds),
        "## Published averages", "",
        "Each number as its paper's table gives it (source column); all are transcribed, with their splits and "
        "labels versions, in `cxrjax/metrics/published.py`.", "",
        *legend,
        *_published_averages(measured, mismatch is None), "",
        "## Curves", "", "![ROC curves](roc.png)", "", "![Precision-recall curves](pr.png)", "",
    ]
    with open(paths["report.md"], "w") as f:
        f.write("\n".join(lines))
    return {"report": paths["report.md"], "roc": paths["roc.png"], "pr": paths["pr.png"]}
