"""The shard format, stated once for the writer (`data_pipelines`) and every reader: where a prepared size and label
version lives, its one split, the record's fields, the manifest beside the records, and opening all of it.

Why one module: the writer and the readers must agree on each of these; stated on both sides they drift apart (a
renamed split or manifest column would be a silent mismatch, not an error).

Layout: `<data_dir>/chestxray14/<config>/<version>/` holds TFDS's ArrayRecord shards of the split `images` (every
image once, in the CSV's order, so record i is row i of `manifest.csv`), `dataset_info.json`, `manifest.csv` and,
written last, `prepare_complete.json` (`is_prepared`). `<config>` is the image side (`256`) with `_labels2017` for
shards labelled from the 2017 CSV. The version is part of the path, so shards of an older format are never read as
the current one.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from cxrjax.data import nih
from cxrjax.data.findings import NUM_FINDINGS

DATASET = "chestxray14"  # TFDS's name of the builder, the first folder under a data dir
# 1.0.0: one ordered split of all images; 1.1.0: pixels as one bytes field; 1.2.0: uncompressed ArrayRecord chunks;
# 1.3.0: the same records, a folder finished only with `PREPARED_MARKER` (a 1.2.0 folder may be an interrupted one).
VERSION = "1.3.0"
SPLIT = "images"  # the single ordered split (TFDS reserves `all`); split protocols are chosen at read time
OFFICIAL_SPLITS = ("train_val", "test")  # the release's own lists, stored per record
METADATA_FIELDS = ("age", "sex", "view")  # what the metadata-fusion model reads besides the image
MANIFEST = "manifest.csv"
# Written last by `cxrjax prepare`, when shards, manifest and report are final: a folder without it is unfinished.
PREPARED_MARKER = "prepare_complete.json"
# source_width/height: the PNG's own size, the frame of BBox_List_2017.csv's boxes.
MANIFEST_COLUMNS = ("record", "image_index", "patient_id", "follow_up", "age", "sex", "view", "official_split",
                    "labels", "source_width", "source_height")
MIN_SIZE = 32  # the smallest image side the CNNs admit


def config_name(size: int, labels: str = "v2020") -> str:
    """The folder of one image side and label version: `256`, or `256_labels2017` for the 2017 CSV's labels."""
    if labels not in nih.DATA_ENTRY_FILES:
        raise ValueError(f"unknown label version {labels!r}; choose one of {sorted(nih.DATA_ENTRY_FILES)}")
    if size < MIN_SIZE:
        raise ValueError(f"image size {size} is too small (at least {MIN_SIZE})")
    return str(size) if labels == "v2020" else f"{size}_labels2017"


def builder_dir(data_dir: str, size: int, labels: str = "v2020") -> str:
    """Where the shards of one size / label version live: <data_dir>/chestxray14/<config>/<version>."""
    return os.path.join(data_dir, DATASET, config_name(size, labels), VERSION)


def record_features(size: int) -> tfds.features.FeaturesDict:
    """The fields of one record, as TFDS writes and decodes them."""
    return tfds.features.FeaturesDict({
        # Raw uint8 rather than an Image feature: no PNG decoding when reading, and no TensorFlow needed.
        # As bytes: the default encoding, an int64 list, costs a varint per pixel to write and to parse.
        "image": tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES),
        "labels": tfds.features.Tensor(shape=(NUM_FINDINGS,), dtype=np.uint8),
        "image_index": tfds.features.Text(),
        "patient_id": tfds.features.Scalar(dtype=np.int32),
        "follow_up": tfds.features.Scalar(dtype=np.int32),
        "age": tfds.features.Scalar(dtype=np.float32),
        "sex": tfds.features.ClassLabel(names=list(nih.SEXES)),
        "view": tfds.features.ClassLabel(names=list(nih.VIEWS)),
        "official_split": tfds.features.ClassLabel(names=list(OFFICIAL_SPLITS)),
    })


@dataclasses.dataclass(frozen=True)
class Metadata:
    """Per-record metadata from manifest.csv, as arrays indexed by record number."""

    image_index: np.ndarray  # str
    patient_id: np.ndarray
    is_test: np.ndarray  # official split
    labels: np.ndarray  # (N, 14) uint8
    age: np.ndarray
    sex: np.ndarray  # index into nih.SEXES
    view: np.ndarray  # index into nih.VIEWS
    source_size: np.ndarray  # (N, 2) width, height of the original PNG: the frame of the release's boxes

    def __len__(self) -> int:
        return len(self.image_index)


@dataclasses.dataclass(frozen=True)
class Shards:
    """Prepared shards: `source` decodes whole records through TFDS; `serialized` gives the records' bytes, which
    the training and eval pipelines decode themselves (`decode_fields`), taking only what a step needs."""

    source: tfds.data_sources.ArrayRecordDataSource
    serialized: tfds.data_sources.ArrayRecordDataSource
    metadata: Metadata
    size: int


def decode_fields(serialized: bytes, size: int) -> dict[str, np.ndarray]:
    """The image, labels, age, sex and view of one serialized record (a `tf.train.Example`).

    Why not TFDS's decoding: it converts all nine features through a general feature tree, which cost more CPU than
    reading the record; this takes five and views the pixel bytes in place. Pixels stored as an int64 list (shards
    written before version 1.1.0) are read too."""
    feature = tf_example_pb2.Example.FromString(serialized).features.feature
    image = feature["image"]
    pixels = (np.frombuffer(image.bytes_list.value[0], np.uint8) if image.bytes_list.value
              else np.asarray(image.int64_list.value, np.uint8))
    return {"image": pixels.reshape(size, size, 1),
            "labels": np.fromiter(feature["labels"].int64_list.value, np.uint8),
            "age": np.float32(feature["age"].float_list.value[0]),
            "sex": np.int32(feature["sex"].int64_list.value[0]),
            "view": np.int32(feature["view"].int64_list.value[0])}


def read_manifest(path: str) -> Metadata:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if any(int(row["record"]) != i for i, row in enumerate(rows)):
        raise ValueError(f"{path}: records are not numbered 0..N-1 in order")
    return Metadata(
        image_index=np.array([row["image_index"] for row in rows]),
        patient_id=np.array([int(row["patient_id"]) for row in rows], np.int64),
        is_test=np.array([row["official_split"] == "test" for row in rows]),
        labels=(np.stack([nih.multi_hot(nih.parse_findings(row["labels"])) for row in rows]) if rows
                else np.zeros((0, NUM_FINDINGS))),
        age=np.array([float(row["age"]) for row in rows], np.float32),
        sex=np.array([nih.SEXES.index(row["sex"]) for row in rows], np.int32),
        view=np.array([nih.VIEWS.index(row["view"]) for row in rows], np.int32),
        source_size=np.array([(int(row["source_width"]), int(row["source_height"])) for row in rows],
                             np.int64).reshape(-1, 2),
    )


def is_prepared(builder_dir: str) -> bool:
    """Whether a prepare of this folder finished (TFDS's `dataset_info.json` alone comes before the last steps)."""
    return os.path.exists(os.path.join(builder_dir, PREPARED_MARKER))


def _size_and_labels(name: str) -> tuple[int, str]:
    """`config_name`'s inverse: "256" → (256, "v2020"), "256_labels2017" → (256, "2017")."""
    size, _, labels = name.partition("_labels")
    return int(size), labels or "v2020"


def missing_shards_message(builder_dir: str) -> str:
    """One line for shards that are not there: what *is* prepared under the same data dir (sizes, label versions,
    older formats) and the override or the `cxrjax prepare` command that fits."""
    config_dir = os.path.dirname(os.path.normpath(builder_dir))
    data_dir = os.path.dirname(os.path.dirname(config_dir))
    try:
        size, labels = _size_and_labels(os.path.basename(config_dir))
    except ValueError:  # not a folder of this layout
        return f"no prepared shards in {builder_dir}; run `cxrjax prepare` first"
    prepared, older = [], []
    root = os.path.join(data_dir, DATASET)
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        for version in sorted(os.listdir(os.path.join(root, name))):
            folder = os.path.join(root, name, version)
            if version == VERSION and is_prepared(folder):
                prepared.append((name, version))
            elif version != VERSION and os.path.exists(os.path.join(folder, "dataset_info.json")):
                older.append((name, version))
    labels_flag = "" if labels == "v2020" else " --labels 2017"
    command = f"`cxrjax prepare --source RELEASE --data-dir {data_dir} --size {size}{labels_flag}`"
    if os.path.isdir(builder_dir):
        return (f"{builder_dir} holds an interrupted prepare (no {PREPARED_MARKER}): run {command} again, which "
                "removes it and prepares anew")
    message = f"no prepared shards of size {size} with {labels} labels in {data_dir} ({builder_dir} is absent)"
    if prepared:
        choices = ", ".join(f"--config.data.size={s} --config.data.labels={l}"
                            for s, l in (_size_and_labels(name) for name, _ in prepared))
        return f"{message}; prepared there: {choices} (use one), or run {command}"
    if older:
        formats = ", ".join(f"{name} in format {version}" for name, version in older)
        return f"{message}; prepared there only in an older format ({formats}): run {command} again"
    return f"{message}; nothing is prepared there: run {command} (or set --config.data.data_dir)"


def open_shards(builder_dir: str) -> Shards:
    """Opens prepared shards (a version folder, see `builder_dir`) and their manifest."""
    if not is_prepared(builder_dir):
        raise FileNotFoundError(missing_shards_message(builder_dir))
    builder = tfds.builder_from_directory(builder_dir)
    source = builder.as_data_source(split=SPLIT)
    serialized = builder.as_data_source(split=SPLIT, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    metadata = read_manifest(os.path.join(builder_dir, MANIFEST))
    if len(metadata) != len(source):
        raise ValueError(f"{builder_dir}: manifest has {len(metadata)} rows but the shards {len(source)} records")
    return Shards(source, serialized, metadata, builder.info.features["image"].shape[0])
