"""Grain input pipelines over the ArrayRecord shards.

Training: record indices of the split → per-epoch shuffle (grain reseeds every epoch) → the last partial global batch
of each epoch dropped → this process's share → read → random crop + horizontal flip on uint8 → batch. Evaluation:
in order, padded to whole global batches, each element carrying `mask` (0 for padding) and its `record` number, so
one compiled eval step serves the whole split. Elements stay uint8; normalisation happens on the device.

Each process reads one contiguous block of every global batch: with P processes and a global batch of G, process p
takes rows [p·G/P, (p+1)·G/P), the rows its devices hold in the global array that
`jax.make_array_from_process_local_data` assembles (`sharding.process_block` says which block a process owns).
Reading and augmentation are defined on the global element number, so a run sees the same batches, augmented the same
way, whatever the number of processes.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import grain
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2
from PIL import Image

from cxrjax import splits
from cxrjax.nih import multi_hot, parse_findings, SEXES, VIEWS

METADATA_FIELDS = ("age", "sex", "view")  # what the metadata-fusion model reads besides the image
SPLIT = "images"  # the single ordered split of the shards (data_pipelines.chestxray14.SPLIT)
MANIFEST = "manifest.csv"


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
            "labels": np.asarray(feature["labels"].int64_list.value, np.uint8),
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
        labels=np.stack([multi_hot(parse_findings(row["labels"])) for row in rows]) if rows else np.zeros((0, 14)),
        age=np.array([float(row["age"]) for row in rows], np.float32),
        sex=np.array([SEXES.index(row["sex"]) for row in rows], np.int32),
        view=np.array([VIEWS.index(row["view"]) for row in rows], np.int32),
        source_size=np.array([(int(row["source_width"]), int(row["source_height"])) for row in rows],
                             np.int64).reshape(-1, 2),
    )


def open_shards(builder_dir: str) -> Shards:
    """Opens prepared shards (a TFDS version folder, see `data_pipelines.prepare.builder_dir`) and their manifest."""
    if not os.path.exists(os.path.join(builder_dir, "dataset_info.json")):
        raise FileNotFoundError(f"no prepared shards in {builder_dir}; run `cxrjax prepare` first")
    builder = tfds.builder_from_directory(builder_dir)
    source = builder.as_data_source(split=SPLIT)
    serialized = builder.as_data_source(split=SPLIT, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    metadata = read_manifest(os.path.join(builder_dir, MANIFEST))
    if len(metadata) != len(source):
        raise ValueError(f"{builder_dir}: manifest has {len(metadata)} rows but the shards {len(source)} records")
    return Shards(source, serialized, metadata, builder.info.features["image"].shape[0])


def split_records(metadata: Metadata, protocol: str, **kwargs) -> dict[str, np.ndarray]:
    """Record numbers of train / val / test under a split protocol (see `cxrjax.splits`)."""
    return splits.make_split(protocol, metadata.patient_id, metadata.is_test, **kwargs)


# --- transforms (classes, not lambdas, so that grain worker processes can pickle them) ---------------------------


class _EpochTrimmed(grain.transforms.Map):
    """Global element g → record number, taking the first `used` elements of each reshuffled epoch.

    `used` is a whole number of global batches, so every batch lies inside one epoch and the partial one is dropped.
    """

    def __init__(self, shuffled: grain.MapDataset, used: int):
        self.shuffled, self.used, self.length = shuffled, used, len(shuffled)

    def map(self, g):
        epoch, position = divmod(int(g), self.used)
        return int(self.shuffled[epoch * self.length + position])


class _ProcessBlock(grain.transforms.Map):
    """Local element i → global element of this process's block of each global batch (see the module docstring).

    A lookup into the global dataset rather than a strided slice of it, so that everything upstream (the random
    augmentation's seed above all) is keyed by the global element number, not by the process-local one."""

    def __init__(self, dataset: grain.MapDataset, block: int, local_batch: int, global_batch: int):
        self.dataset, self.block, self.local_batch, self.global_batch = dataset, block, local_batch, global_batch

    def map(self, i):
        step, offset = divmod(int(i), self.local_batch)
        return self.dataset[step * self.global_batch + self.block * self.local_batch + offset]


def _process_share(dataset: grain.MapDataset, global_batch: int, local_batch: int,
                   process_index: int) -> grain.MapDataset:
    """Process `process_index`'s rows of each of the global batches that `dataset` (global elements) makes up."""
    if local_batch == global_batch:
        return dataset
    num_batches = len(dataset) // global_batch
    return grain.MapDataset.range(num_batches * local_batch).map(
        _ProcessBlock(dataset, process_index, local_batch, global_batch))


class _ReadRecord(grain.transforms.Map):
    """Record number → the fields a training or eval step needs."""

    def __init__(self, shards: Shards):
        self.serialized, self.size = shards.serialized, shards.size

    def map(self, record):
        return decode_fields(self.serialized[record], self.size) | {"record": np.int64(record)}


class TrainAugment(grain.transforms.RandomMap):
    """On uint8: optional rotation by up to ±`rotation` degrees (bilinear, black corners), then a random (or centre)
    `crop`² window, then a horizontal flip with probability 1/2.

    Ge 2018: 256 → random 224 crop; the 2023 capstone: centre crop 224, flip and a small rotation.
    """

    def __init__(self, crop: int, flip: bool = True, random_crop: bool = True, rotation: float = 0.0):
        self.crop, self.flip, self.random_crop, self.rotation = crop, flip, random_crop, rotation

    def random_map(self, element, rng: np.random.Generator):
        image = element["image"]
        if self.rotation:
            angle = rng.uniform(-self.rotation, self.rotation)
            rotated = Image.fromarray(image[..., 0]).rotate(angle, resample=Image.Resampling.BILINEAR)
            image = np.asarray(rotated)[..., None]
        spare_rows, spare_columns = image.shape[0] - self.crop, image.shape[1] - self.crop
        if self.random_crop:
            top, left = rng.integers(0, spare_rows + 1), rng.integers(0, spare_columns + 1)
        else:
            top, left = spare_rows // 2, spare_columns // 2
        image = image[top:top + self.crop, left:left + self.crop]
        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
        return element | {"image": np.ascontiguousarray(image)}


class CenterCrop(grain.transforms.Map):
    def __init__(self, crop: int):
        self.crop = crop

    def map(self, element):
        image = element["image"]
        top, left = (image.shape[0] - self.crop) // 2, (image.shape[1] - self.crop) // 2
        return element | {"image": np.ascontiguousarray(image[top:top + self.crop, left:left + self.crop])}


class _Masked(grain.transforms.Map):
    """Element i of the padded eval list: a real record (mask 1) or a repeated one standing in for padding (mask 0)."""

    def __init__(self, records: np.ndarray, padded_length: int):
        self.records, self.padded_length = records, padded_length

    def map(self, i):
        return int(self.records[min(i, len(self.records) - 1)]), np.uint8(i < len(self.records))


class _ReadMasked(_ReadRecord):
    def map(self, record_and_mask):
        record, mask = record_and_mask
        return super().map(record) | {"mask": mask}


def _check_batch(global_batch: int, process_count: int) -> int:
    if global_batch % process_count:
        raise ValueError(f"global batch {global_batch} is not divisible by {process_count} processes")
    return global_batch // process_count


def steps_per_epoch(num_records: int, global_batch: int, limit: int = 0) -> int:
    """Whole global batches in an epoch, at most `limit` (0: no limit; short epochs for smoke tests and quick looks)."""
    steps = num_records // global_batch
    if steps == 0:
        raise ValueError(f"the training split has {num_records} images, fewer than one batch of {global_batch}")
    return min(steps, limit) if limit else steps


def train_dataset(shards: Shards, records: np.ndarray, *, global_batch: int, crop: int, num_steps: int,
                  seed: int, augment: TrainAugment | None = None, steps_limit: int = 0, process_index: int = 0,
                  process_count: int = 1,
                  read_options: grain.ReadOptions | None = None) -> grain.IterDataset:
    """`num_steps` process-local training batches; the returned dataset's iterator is checkpointable."""
    local_batch = _check_batch(global_batch, process_count)
    used = steps_per_epoch(len(records), global_batch, steps_limit) * global_batch
    shuffled = grain.MapDataset.source(np.asarray(records, np.int64)).shuffle(seed=seed)
    ds = grain.MapDataset.range(num_steps * global_batch).map(_EpochTrimmed(shuffled, used))
    ds = ds.map(_ReadRecord(shards)).random_map(augment or TrainAugment(crop), seed=seed)
    ds = _process_share(ds, global_batch, local_batch, process_index).batch(local_batch, drop_remainder=True)
    return ds.to_iter_dataset(read_options or grain.ReadOptions(num_threads=4, prefetch_buffer_size=4))


def eval_dataset(shards: Shards, records: np.ndarray, *, global_batch: int, crop: int, process_index: int = 0,
                 process_count: int = 1, read_options: grain.ReadOptions | None = None) -> grain.IterDataset:
    """All of `records` in order, centre-cropped, in whole padded global batches with `mask` and `record`."""
    local_batch = _check_batch(global_batch, process_count)
    padded = -(-len(records) // global_batch) * global_batch
    ds = grain.MapDataset.range(padded).map(_Masked(np.asarray(records, np.int64), padded))
    ds = _process_share(ds, global_batch, local_batch, process_index)
    ds = ds.map(_ReadMasked(shards)).map(CenterCrop(crop)).batch(local_batch, drop_remainder=True)
    return ds.to_iter_dataset(read_options or grain.ReadOptions(num_threads=4, prefetch_buffer_size=4))
