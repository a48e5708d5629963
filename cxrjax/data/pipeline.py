"""Grain input pipelines over the ArrayRecord shards, one grain element per process-local batch.

Training: step → this process's rows of global batch `step` → their records in the epoch's shuffled order (a new
order every epoch, the last partial global batch of each epoch dropped) → read → random crop + horizontal flip on
uint8, straight into the batch's arrays. Evaluation: in order, padded to whole global batches, each element carrying
`mask` (0 for padding) and its `record` number, so one compiled eval step serves the whole split. Elements stay
uint8; normalisation happens on the device. Why whole batches: per-image grain stages cost more CPU than the reading
itself (BENCHMARKS.md); the iterator is still grain's, checkpointable and prefetched by its threads.

Each process reads one contiguous block of every global batch: with P processes and a global batch of G, process p
takes rows [p·G/P, (p+1)·G/P), the rows its devices hold in the global array that
`jax.make_array_from_process_local_data` assembles (`sharding.process_block` says which block a process owns).
The order and the augmentation are defined on the global batch and row, so a run sees the same batches, augmented
the same way, whatever the number of processes.
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np
from PIL import Image

from cxrjax.data.findings import NUM_FINDINGS
from cxrjax.data.images import crop_offset
from cxrjax.data.shard_format import METADATA_FIELDS, Shards, decode_fields

# --- transforms (classes, not lambdas, so that grain worker processes can pickle them) ---------------------------
#
# Each grain element is one whole process-local batch: step → the global element numbers of this process's block →
# records → read, decode and crop straight into the batch's arrays. Why not grain's per-element maps and `batch`:
# with five per-element stages grain's own bookkeeping cost as much CPU as reading the record, and stacking copied
# every image once more.


def _block_elements(step: int, global_batch: int, local_batch: int, block: int) -> np.ndarray:
    """Global element numbers of block `block` (of local_batch rows) of global batch `step`."""
    return step * global_batch + block * local_batch + np.arange(local_batch, dtype=np.int64)


class _BatchReader:
    """Fills a batch's arrays, one record at a time, from the shards' serialized records."""

    def __init__(self, shards: Shards, crop: int):
        self.serialized, self.size, self.crop = shards.serialized, shards.size, crop

    def read(self, records: np.ndarray, window) -> dict[str, np.ndarray]:
        """`window(i, image)` gives row i's crop² view of its decoded (size, size, 1) image."""
        n = len(records)
        batch = {"image": np.empty((n, self.crop, self.crop, 1), np.uint8),
                 "labels": np.empty((n, NUM_FINDINGS), np.uint8),
                 "age": np.empty(n, np.float32), "sex": np.empty(n, np.int32), "view": np.empty(n, np.int32),
                 "record": np.asarray(records, np.int64)}
        for i, record in enumerate(records):
            fields = decode_fields(self.serialized[int(record)], self.size)
            batch["image"][i] = window(i, fields["image"])
            for name in ("labels", *METADATA_FIELDS):
                batch[name][i] = fields[name]
        return batch


SHUFFLE_STREAM, AUGMENT_STREAM = 0, 1  # the two random streams drawn from a run's seed


class _EpochOrder:
    """Epoch e → the order of the training records in it, a permutation drawn from (seed, e), drawn once.

    Why not grain's `shuffle`: it computes a record's position by index_shuffle on every lookup, 75 µs a record on
    this machine, a third of the whole pipeline. A permutation of the 86,524 training records takes 2 ms an epoch.
    The last two epochs are kept: a batch lies inside one epoch, but prefetching threads straddle the boundary."""

    def __init__(self, records: np.ndarray, seed: int):
        self.records, self.seed, self.orders = np.asarray(records, np.int64), seed, {}

    def __call__(self, epoch: int) -> np.ndarray:
        order = self.orders.get(epoch)
        if order is None:
            order = np.random.default_rng([self.seed, SHUFFLE_STREAM, epoch]).permutation(self.records)
            self.orders = {e: o for e, o in self.orders.items() if e == epoch - 1} | {epoch: order}
        return order


def augment_draws(seed: int, step: int, global_batch: int) -> np.ndarray:
    """(global_batch, 4) uniforms in [0, 1), row r drawing the augmentation of row r of global batch `step`.

    Drawn for the whole global batch from (seed, step), so an image's augmentation depends on its place in the run,
    not on how many processes share the batch."""
    return np.random.default_rng([seed, AUGMENT_STREAM, step]).random((global_batch, 4))


@dataclasses.dataclass(frozen=True)
class TrainAugment:
    """On uint8: optional rotation by up to ±`rotation` degrees (bilinear, black corners), then a random (or centre)
    `crop`² window, then a horizontal flip with probability 1/2.

    Ge 2018: 256 → random 224 crop; the 2023 capstone: centre crop 224, flip and a small rotation.
    """

    crop: int
    flip: bool = True
    random_crop: bool = True
    rotation: float = 0.0

    def __call__(self, image: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """(H, W, 1) and four uniforms in [0, 1) (angle, top, left, flip) → a (crop, crop, 1) view (after a
        rotation, of a new array)."""
        if self.rotation:
            angle = self.rotation * (2.0 * draws[0] - 1.0)
            rotated = Image.fromarray(image[..., 0]).rotate(angle, resample=Image.Resampling.BILINEAR)
            image = np.asarray(rotated)[..., None]
        spare_rows, spare_columns = image.shape[0] - self.crop, image.shape[1] - self.crop
        if self.random_crop:
            top, left = int(draws[1] * (spare_rows + 1)), int(draws[2] * (spare_columns + 1))
        else:
            top, left = spare_rows // 2, spare_columns // 2
        image = image[top:top + self.crop, left:left + self.crop]
        return image[:, ::-1] if self.flip and draws[3] < 0.5 else image


class _TrainBatch(grain.transforms.Map):
    """Local step → this process's block of global batch `step`, augmented, as arrays.

    Global element g of the run is position g mod `used` of epoch g // `used`: `used` is a whole number of global
    batches, so every batch lies inside one epoch and the partial one is dropped."""

    def __init__(self, reader: _BatchReader, order: _EpochOrder, used: int, augment: TrainAugment, seed: int,
                 global_batch: int, local_batch: int, block: int):
        self.reader, self.order, self.used, self.augment, self.seed = reader, order, used, augment, seed
        self.global_batch, self.local_batch, self.block = global_batch, local_batch, block

    def map(self, step):
        step = int(step)
        elements = _block_elements(step, self.global_batch, self.local_batch, self.block)
        records = self.order(int(elements[0]) // self.used)[elements % self.used]
        start = self.block * self.local_batch
        draws = augment_draws(self.seed, step, self.global_batch)[start:start + self.local_batch]
        return self.reader.read(records, lambda i, image: self.augment(image, draws[i]))


class _EvalBatch(grain.transforms.Map):
    """Local batch b → this process's block of padded global batch b, centre-cropped: element i is record
    `records[i]` (mask 1) or, past the end, the last record repeated as padding (mask 0)."""

    def __init__(self, reader: _BatchReader, records: np.ndarray, global_batch: int, local_batch: int, block: int):
        self.reader, self.records = reader, records
        self.global_batch, self.local_batch, self.block = global_batch, local_batch, block
        self.top = crop_offset(reader.size, reader.crop)

    def map(self, step):
        elements = _block_elements(int(step), self.global_batch, self.local_batch, self.block)
        crop, top = self.reader.crop, self.top
        batch = self.reader.read(self.records[np.minimum(elements, len(self.records) - 1)],
                                 lambda i, image: image[top:top + crop, top:top + crop])
        return batch | {"mask": (elements < len(self.records)).astype(np.uint8)}


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


def _iterate(batches: grain.MapDataset, read_options: grain.ReadOptions | None, workers: int) -> grain.IterDataset:
    """Grain's iterator over the batches: read by threads of this process, or, with `workers` > 0, by that many worker
    processes (grain's `mp_prefetch`), each making every `workers`-th batch. Why processes: a thread's decoding holds
    the GIL, so one process tops out near 12,000 images/s whatever its thread count, less than a host of several
    accelerators needs. Same batches, same order, and a checkpointable position either way."""
    iterator = batches.to_iter_dataset(read_options or grain.ReadOptions(num_threads=4, prefetch_buffer_size=4))
    return iterator.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers)) if workers else iterator


def train_dataset(shards: Shards, records: np.ndarray, *, global_batch: int, crop: int, num_steps: int,
                  seed: int, augment: TrainAugment | None = None, steps_limit: int = 0, process_index: int = 0,
                  process_count: int = 1, read_options: grain.ReadOptions | None = None,
                  workers: int = 0) -> grain.IterDataset:
    """`num_steps` process-local training batches; the returned dataset's iterator is checkpointable."""
    local_batch = _check_batch(global_batch, process_count)
    used = steps_per_epoch(len(records), global_batch, steps_limit) * global_batch
    ds = grain.MapDataset.range(num_steps).map(_TrainBatch(
        _BatchReader(shards, crop), _EpochOrder(records, seed), used, augment or TrainAugment(crop), seed,
        global_batch, local_batch, process_index))
    return _iterate(ds, read_options, workers)


def eval_dataset(shards: Shards, records: np.ndarray, *, global_batch: int, crop: int, process_index: int = 0,
                 process_count: int = 1, read_options: grain.ReadOptions | None = None,
                 workers: int = 0) -> grain.IterDataset:
    """All of `records` in order, centre-cropped, in whole padded global batches with `mask` and `record`."""
    local_batch = _check_batch(global_batch, process_count)
    ds = grain.MapDataset.range(-(-len(records) // global_batch)).map(_EvalBatch(
        _BatchReader(shards, crop), np.asarray(records, np.int64), global_batch, local_batch, process_index))
    return _iterate(ds, read_options, workers)
