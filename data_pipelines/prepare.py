"""`cxrjax prepare`: NIH release folder → ArrayRecord shards + manifest.csv + prepare_report.json.

The manifest is the metadata of every record (one row per record, in record order) without the pixels: split
protocols and class statistics read it in milliseconds instead of scanning gigabytes of shards. It is written both to
the output folder (for people) and into the TFDS version folder (so readers find the one that matches the shards).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import os

import tensorflow_datasets as tfds

from cxrjax.data import nih
from cxrjax.data.shard_format import MANIFEST, MANIFEST_COLUMNS, builder_dir
from data_pipelines.chestxray14 import Chestxray14, Chestxray14Config, PrepareReport

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
    """Writes the shards (unless already there), the manifest and the report. Returns where they are."""
    if not os.path.isdir(source):
        raise FileNotFoundError(f"release folder {source} does not exist")
    target = builder_dir(data_dir, size, labels)
    if os.path.exists(os.path.join(target, "dataset_info.json")):
        return Prepared(target, None)
    check_release(source, labels)
    config = Chestxray14Config(size=size, labels=labels)
    if config.name in Chestxray14.builder_configs:  # TFDS wants registered configs by name, others as objects
        config = config.name
    with _quiet_tfds():
        builder = Chestxray14(data_dir=data_dir, config=config, num_workers=num_workers or os.cpu_count() or 1)
        builder.download_and_prepare(file_format="array_record",
                                     download_config=tfds.download.DownloadConfig(manual_dir=source))
    for path in (os.path.join(data_dir, MANIFEST), os.path.join(target, MANIFEST)):
        _write_manifest(path, builder.manifest)
    report = dataclasses.asdict(builder.report) | {"summary": builder.report.summary(), "size": size,
                                                   "labels": labels, "shards": target}
    for path in (os.path.join(data_dir, REPORT), os.path.join(target, REPORT)):
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    return Prepared(target, builder.report)


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
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
