"""Split protocols over one ordered set of records.

The shards hold every image once; a protocol is only a choice of record indices, made at read time from the metadata
(patient id, official split). All protocols are seeded, and all but one are patient-disjoint: a patient's images
never fall into two parts, because images of one patient are highly correlated and leaking them inflates AUC. The
exception, `official_images`, exists to reproduce a paper that cut its validation set by image (the FPT capstone).
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np

PROTOCOLS = ("official", "official_images", "random", "resample", "kfold")


def _partition_patients(patient_ids: np.ndarray, fractions: list[float], rng: np.random.Generator) -> np.ndarray:
    """Assigns every record a part number so that each part gets about `fractions[k]` of the *images*.

    Patients are shuffled, then laid end to end by image count and cut at the cumulative fractions.
    """
    patients, counts = np.unique(patient_ids, return_counts=True)
    order = rng.permutation(len(patients))
    cumulative = np.cumsum(counts[order]) - counts[order] / 2.0  # each patient's midpoint in the image line
    bounds = np.cumsum(fractions)[:-1] / np.sum(fractions) * len(patient_ids)
    part_of_patient = np.empty(len(patients), np.int64)
    part_of_patient[order] = np.searchsorted(bounds, cumulative)
    return part_of_patient[np.searchsorted(patients, patient_ids)]


def _indices_by_part(parts: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: np.flatnonzero(parts == k) for k, name in enumerate(names)}


def official(patient_ids: np.ndarray, is_test: np.ndarray, val_fraction: float = 0.2, seed: int = 0):
    """The official split: `test_list.txt` is test; `train_val_list.txt` is cut into train/val by patient."""
    patient_ids, is_test = np.asarray(patient_ids), np.asarray(is_test, bool)
    train_val = np.flatnonzero(~is_test)
    parts = _partition_patients(patient_ids[train_val], [1 - val_fraction, val_fraction], np.random.default_rng(seed))
    return {"train": train_val[parts == 0], "val": train_val[parts == 1], "test": np.flatnonzero(is_test)}


def random(patient_ids: np.ndarray, fractions=(0.7, 0.1, 0.2), seed: int = 0):
    """A random patient-level train/val/test split (Wang et al. 2017, Ge et al. 2018: 70/10/20)."""
    parts = _partition_patients(np.asarray(patient_ids), list(fractions), np.random.default_rng(seed))
    return _indices_by_part(parts, ("train", "val", "test"))


def official_images(is_test: np.ndarray, val_fraction: float = 0.2, seed: int = 0):
    """The official test split, and `train_val_list.txt` cut into train/val by *image*: ⌈val_fraction · n⌉ images
    drawn at random are val. On the real release that is the FPT capstone's 69,219 / 17,305 (17,305 = ⌈0.2 ×
    86,524⌉) / 25,596. A patient's images then straddle train and val, so validation (model selection, operating
    points) is optimistic; the test split is the official one, untouched."""
    train_val = np.flatnonzero(~np.asarray(is_test, bool))
    shuffled = np.random.default_rng(seed).permutation(train_val)
    num_val = math.ceil(val_fraction * len(train_val))
    return {"train": np.sort(shuffled[num_val:]), "val": np.sort(shuffled[:num_val]),
            "test": np.flatnonzero(np.asarray(is_test, bool))}


def kfold(patient_ids: np.ndarray, num_folds: int = 5, fold: int = 0, val_fraction: float = 0.1, seed: int = 0):
    """Fold `fold` of a k-fold patient-level resampling (Baltruschat et al. 2019): that fold is test; the other folds
    are split again by patient into train and val."""
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold {fold} is outside 0..{num_folds - 1}")
    patient_ids = np.asarray(patient_ids)
    rng = np.random.default_rng(seed)
    folds = _partition_patients(patient_ids, [1.0] * num_folds, rng)
    rest = np.flatnonzero(folds != fold)
    parts = _partition_patients(patient_ids[rest], [1 - val_fraction, val_fraction], rng)
    return {"train": rest[parts == 0], "val": rest[parts == 1], "test": np.flatnonzero(folds == fold)}


def split_records(data: ml_collections.ConfigDict, metadata) -> dict[str, np.ndarray]:
    """Record numbers of train / val / test of the shards' `metadata` (a `shard_format.Metadata`) under the protocol
    of a config's `data` section: `protocol`, `split_seed`, `val_fraction`, `fractions`, `num_folds`, `fold`."""
    if data.protocol == "official":
        return official(metadata.patient_id, metadata.is_test, val_fraction=data.val_fraction, seed=data.split_seed)
    if data.protocol == "official_images":
        return official_images(metadata.is_test, val_fraction=data.val_fraction, seed=data.split_seed)
    if data.protocol == "random":
        return random(metadata.patient_id, fractions=tuple(data.fractions), seed=data.split_seed)
    if data.protocol == "resample":  # re-sampling K of a series: the random protocol with seed split_seed + K
        return random(metadata.patient_id, fractions=tuple(data.fractions), seed=data.split_seed + data.fold)
    if data.protocol == "kfold":
        return kfold(metadata.patient_id, num_folds=data.num_folds, fold=data.fold, val_fraction=data.val_fraction,
                     seed=data.split_seed)
    raise ValueError(f"unknown split protocol {data.protocol!r}; choose one of {PROTOCOLS}")
