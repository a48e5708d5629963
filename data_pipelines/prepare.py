"""`cxrjax prepare`: NIH release folder → ArrayRecord shards + manifest.csv + prepare_report.json.

The manifest is the metadata of every record (one row per record, in record order) without the pixels: split
protocols and class statistics read it in milliseconds instead of scanning gigabytes of shards. It is written both to
the output folder (for people) and into the TFDS version folder (so readers find the one that matches the shards).

Why a completion marker: TFDS publishes its folder (with `dataset_info.json`) when its shards are written, but the
shards are rewritten uncompressed afterwards and the manifest and report come last; a prepare killed in between
leaves a folder that looks finished. `shard_format.PREPARED_MARKER` is written last, atomically, and every reader
checks it (`shard_format.is_prepared`); a folder without it is an interrupted prepare, removed and done again, as
are TFDS's own `incomplete.*` folders. Every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import logging
import os
import shutil

import tensorflow_datasets as tfds

from cxrjax.data import atomic, nih, shard_format
from cxrjax.data.shard_format import MANIFEST, MANIFEST_COLUMNS, builder_dir
from data_pipelines.chestxray14 import (
    Chestxray14,
    Chestxray14Config,
    NoUsableImage,
    PrepareReport,
    survey_release,
)

REPORT = "prepare_report.json"


@dataclasses.dataclass(frozen=True)
class Prepared:
    builder_dir: str
    report: PrepareReport | None  # None when the shards already existed


def check_release(source: str, labels: str) -> None:
    """Refuses, before any work (TFDS would create folders and fail minutes later), a release folder without the
    labels CSV asked for, naming the other version's CSV when that one is there, or without the split lists."""
    wanted = nih.DATA_ENTRY_FILES[labels]
    try:
        nih.find_release_file(source, wanted)
    except FileNotFoundError:
        others = [(version, name) for version, name in nih.DATA_ENTRY_FILES.items() if version != labels]
        for version, name in others:
            try:
                nih.find_release_file(source, name)
            except FileNotFoundError:
                continue
            raise FileNotFoundError(f"{wanted} (the {labels} labels) not found in {source}, but {name} is: "
                                    f"prepare with --labels {version}") from None
        raise
    for name in ("train_val_list.txt", "test_list.txt"):
        nih.find_release_file(source, name)


def prepare(source: str, data_dir: str, size: int = 256, labels: str = "v2020",
            num_workers: int | None = None) -> Prepared:
    """Writes the shards (unless a complete prepare is there), the manifest and the report. Returns where they are.

    Raises `NoUsableImage`, after writing the report to `data_dir`, when no CSV row has a readable image."""
    if not os.path.isdir(source):
        raise FileNotFoundError(f"release folder {source} does not exist")
    target = builder_dir(data_dir, size, labels)
    if shard_format.is_prepared(target):
        return Prepared(target, None)
    check_release(source, labels)
    with exclusive(target):
        return _prepare_anew(source, data_dir, target, size, labels, num_workers)


@contextlib.contextmanager
def exclusive(target: str):
    """Held while `target` is prepared, so a second prepare of it (another shell, another host on a shared disk)
    stops with one line instead of removing a folder that is being written as if it were an interrupted one. An
    advisory lock on a file beside the folder: the kernel releases it when its holder dies, kill -9 included."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another `cxrjax prepare` of {target} is running; let it finish, then run this "
                               "one again") from None
        yield


def _prepare_anew(source: str, data_dir: str, target: str, size: int, labels: str,
                  num_workers: int | None) -> Prepared:
    if shard_format.is_prepared(target):  # finished by another prepare between `prepare`'s check and the lock
        return Prepared(target, None)
    _remove_interrupted(target)
    survey = survey_release(source, labels)
    if not survey.present:
        _no_usable_image(survey.report, source, data_dir, size, labels)
    config = Chestxray14Config(size=size, labels=labels)
    if config.name in Chestxray14.builder_configs:  # TFDS wants registered configs by name, others as objects
        config = config.name
    with _quiet_tfds():
        builder = Chestxray14(data_dir=data_dir, config=config, num_workers=num_workers or os.cpu_count() or 1,
                              survey=survey)
        try:
            builder.download_and_prepare(file_format="array_record",
                                         download_config=tfds.download.DownloadConfig(manual_dir=source))
        except AssertionError:  # TFDS's "No examples were yielded": every image failed to decode
            if builder.report.written:
                raise
            _no_usable_image(builder.report, source, data_dir, size, labels)
    report = _report_json(builder.report, size, labels, target)
    _write_manifest(os.path.join(target, MANIFEST), builder.manifest)
    atomic.write_json(os.path.join(target, REPORT), report)
    _write_manifest(os.path.join(data_dir, MANIFEST), builder.manifest)
    atomic.write_json(os.path.join(data_dir, REPORT), report)
    atomic.write_json(os.path.join(target, shard_format.PREPARED_MARKER),
                {"records": len(builder.manifest), "summary": builder.report.summary()})
    return Prepared(target, builder.report)


def _remove_interrupted(target: str) -> None:
    """Removes what an interrupted prepare of `target` left: the folder without its marker, half-rewritten shards
    included, and TFDS's `incomplete.*` folders beside it."""
    parent = os.path.dirname(target)  # made by `exclusive`
    leftovers = [target] if os.path.exists(target) else []
    leftovers += [os.path.join(parent, name) for name in sorted(os.listdir(parent))
                  if name.startswith(tfds.core.constants.INCOMPLETE_PREFIX)
                  and name.endswith("_" + os.path.basename(target))]
    for path in leftovers:
        logging.getLogger(__name__).warning("%s is an interrupted prepare (no %s): removed, preparing again",
                                            path, shard_format.PREPARED_MARKER)
        shutil.rmtree(path)


def _no_usable_image(report: PrepareReport, source: str, data_dir: str, size: int, labels: str):
    """Writes the report where a user looks for it and raises one line: where the images were looked for and what
    became of the rows."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, REPORT)
    atomic.write_json(path, _report_json(report, size, labels, None))
    raise NoUsableImage(f"no usable image in {source}: looked for {report.searched}; {report.summary()}; "
                        f"nothing prepared, see {path}")


def _report_json(report: PrepareReport, size: int, labels: str, shards: str | None) -> dict:
    return dataclasses.asdict(report) | {"summary": report.summary(), "size": size, "labels": labels,
                                         "shards": shards}


class _CustomConfigIsInfo(logging.Filter):
    """TFDS warns "Using custom data configuration" for every size outside BUILDER_CONFIGS; any size is ours to
    choose, so it is an INFO detail."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Using custom data configuration"):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


@contextlib.contextmanager
def _quiet_tfds():
    """TFDS's own bars ("Generating splits", "Shuffling <a 200-character glob>", nested under the decoding bar) and
    its custom-config warning, only where TFDS's logger shows INFO (`cxrjax --verbose`): the decoding bar counts
    the images."""
    tfds_logger = logging.getLogger("absl")  # TFDS logs through absl
    verbose = tfds_logger.isEnabledFor(logging.INFO)
    note = _CustomConfigIsInfo()
    tfds_logger.addFilter(note)
    tfds.display_progress_bar(verbose)
    try:
        yield
    finally:
        tfds.display_progress_bar(True)
        tfds_logger.removeFilter(note)


def _write_manifest(path: str, rows: list[dict]) -> None:
    with atomic.written_whole(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
