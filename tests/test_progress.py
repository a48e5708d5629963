"""What a user sees on stderr, run as a user runs it (subprocess, stderr a pipe as in a log file): progress lines
with completed counts, a line saying what each command wrote and where, one summary line where a warning would
repeat per finding (`--verbose` brings the details back), no TFDS banner, glob path or cursor debris."""

import collections
import csv
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from cxrjax.data.findings import FINDINGS
from cxrjax.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CURSOR_CONTROL = re.compile(r"\r|\x1b\[")


def _cxrjax(*argv, cwd=ROOT) -> subprocess.CompletedProcess:
    process = subprocess.run([sys.executable, "-m", "cxrjax.cli", *map(str, argv)], capture_output=True, text=True,
                             cwd=cwd, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert not CURSOR_CONTROL.search(process.stderr), process.stderr[-3000:]  # a log, not a terminal
    return process


@pytest.fixture(scope="module")
def trained(prepared_shards, tmp_path_factory):
    """`cxrjax train` of two epochs of three steps, its stderr captured as a log file would be."""
    folder = tmp_path_factory.mktemp("progress")
    config_file = folder / "config.py"
    config_file.write_text("from cxrjax.configs import default\n\ndef get_config():\n"
                           "    c = default.get_config()\n"
                           f"    c.data.data_dir, c.data.size, c.data.crop = {prepared_shards[0]!r}, 32, 28\n"
                           "    c.data.num_threads = 2\n"
                           "    c.batch_size, c.eval_batch_size, c.num_epochs, c.steps_per_epoch = 16, 32, 2, 3\n"
                           "    c.log_every_steps = 2\n    return c\n")
    workdir = folder / "run"
    return workdir, _cxrjax("train", f"--config={config_file}", f"--workdir={workdir}").stderr.splitlines()


def test_training_log_counts_completed_steps_and_says_validating_and_saved(trained):
    workdir, lines = trained
    training = [line for line in lines if line.startswith("training: ")]
    assert training[0].startswith("training:   0% 0/6 ["), training
    # Where validation starts, every step of the epoch has completed: the count is of finished steps.
    starts = [i for i, line in enumerate(lines) if line.startswith("validating:   0% 0/")]
    assert len(starts) == 2, lines
    for start, steps in zip(starts, (3, 6)):
        assert re.match(rf"training: +\d+% {steps}/6 \[.*step", lines[start - 1]), lines[start - 1]
        done = next(line for line in lines[start:] if not line.startswith("validating:  "))  # a long one has more
        assert re.match(r"validating: 100% (\d+)/\1 \[", done), lines[start:]
        saved = next(line for line in lines[start:] if line.startswith("epoch "))
        assert re.fullmatch(rf"epoch {steps // 3}: validation mean AUC (\d\.\d{{4}}|undefined), loss \d\.\d{{4}}; "
                            rf"checkpoint of step {steps} saved in {re.escape(str(workdir))}", saved), saved
    assert re.match(r"training: 100% 6/6 \[", [line for line in lines if line.startswith("training: ")][-1])
    assert lines[-1] == f"train: checkpoints, metrics.jsonl and TensorBoard logs in {workdir}"


def test_eval_says_where_it_wrote_its_report(trained):
    workdir, _ = trained
    lines = _cxrjax("eval", "--workdir", workdir, "--split", "val", "--bootstrap", 150).stderr.splitlines()
    assert re.match(r"eval: predicting val: 100% (\d+)/\1 \[", [line for line in lines if "predicting" in line][-1])
    assert "bootstrap: 150 resamples, blocks of 100: 100% 2/2 [" in "\n".join(lines)
    folder = workdir / "eval" / "val"
    assert lines[-1] == f"eval: predictions.csv, metrics.json, report.md, roc.png and pr.png in {folder}"
    assert all((folder / name).stat().st_size > 0 for name in ("predictions.csv", "metrics.json", "report.md"))


@pytest.fixture(scope="module")
def eight_images(synthetic_release, tmp_path_factory):
    """Predictions for the first eight images of the synthetic release (a split too small for every finding)."""
    labels = os.path.join(synthetic_release, "Data_Entry_2017_v2020.csv")
    with open(labels, newline="") as f:
        names = [row["Image Index"] for _, row in zip(range(8), csv.DictReader(f))]
    predictions = tmp_path_factory.mktemp("eight") / "predictions.csv"
    rng = np.random.default_rng(0)
    with open(predictions, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Image Index", *FINDINGS])
        writer.writerows([name, *rng.uniform(size=len(FINDINGS))] for name in names)
    return predictions, labels


def test_an_eight_image_split_warns_once_and_verbose_brings_the_details_back(eight_images):
    predictions, labels = eight_images
    quiet = _cxrjax("score", "--predictions", predictions, "--labels", labels, "--bootstrap", 0).stderr.splitlines()
    warnings = [line for line in quiet if line.startswith("WARNING")]
    assert len(warnings) == 1, quiet
    undefined = re.match(r"WARNING: AUC undefined for (\d+) findings with a single class among these 8 images: "
                         r"([^;]+)", warnings[0])
    assert undefined, warnings
    findings = undefined[2].split(", ")
    assert int(undefined[1]) == len(findings) > 1 and set(findings) <= set(FINDINGS)
    assert quiet[-1] == "nothing written (--output FILE keeps the results as JSON)"

    verbose = _cxrjax("--verbose", "score", "--predictions", predictions, "--labels", labels, "--bootstrap", 0).stderr
    for finding in findings:  # one line per finding, as before the summary
        assert f"INFO: {finding}: only one class among 8 images, AUC undefined" in verbose.splitlines(), verbose


def test_prepare_prints_no_tfds_banner_glob_or_debris(synthetic_release, tmp_path):
    process = _cxrjax("prepare", "--source", synthetic_release, "--data-dir", tmp_path, "--size", 32, "--workers", 1)
    for noise in ("Downloading and preparing", "Subsequent calls", "Using custom data configuration", "Shuffling",
                  "[0-9][0-9]"):
        assert noise not in process.stderr + process.stdout, noise
    assert re.search(r"^prepare: decoding to 32²: 100% 400/400 \[.*img/s\]$", process.stderr, re.M), process.stderr
    assert process.stdout.splitlines()[-1].startswith("prepare: 400 CSV rows: 400 written, 0 missing, 0 failed; "
                                                      f"shards in {tmp_path}")


class _Step:
    """A dispatched step's loss: done once `finished` says so; waiting for it finishes it (and counts the wait)."""

    def __init__(self, finished: bool, waits: collections.Counter):
        self.finished, self.waits = finished, waits

    def is_ready(self) -> bool:
        return self.finished

    def block_until_ready(self):
        self.waits["blocked"] += 0 if self.finished else 1
        self.finished = True
        return self


class _Bar:
    n = 0

    def update(self, count: int = 1):
        self.n += count


def test_the_bar_counts_finished_steps_and_waits_only_beyond_the_steps_in_flight():
    waits, bar = collections.Counter(), _Bar()
    in_flight = collections.deque([_Step(True, waits), _Step(False, waits), _Step(False, waits)])
    train._count_completed(bar, in_flight, keep=2)
    assert (bar.n, len(in_flight), waits["blocked"]) == (1, 2, 0)  # the finished one counted, nothing waited for
    in_flight.append(_Step(False, waits))
    train._count_completed(bar, in_flight, keep=2)
    assert (bar.n, len(in_flight), waits["blocked"]) == (2, 2, 1)  # waited for the oldest, two left in flight
    train._count_completed(bar, in_flight, keep=0)
    assert (bar.n, len(in_flight), waits["blocked"]) == (4, 0, 3)
