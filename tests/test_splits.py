"""Split protocols: seeded, patient-disjoint, covering every record once."""

import types

import numpy as np
import pytest

from conftest import shared_data
from cxrjax.configs import default
from cxrjax.data import nih, splits


def _patients(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n // 3, n)


def _assert_partition(parts, patient_ids):
    indices = np.concatenate(list(parts.values()))
    assert np.array_equal(np.sort(indices), np.arange(len(patient_ids)))  # every record exactly once
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not set(patient_ids[parts[a]]) & set(patient_ids[parts[b]]), f"{a} and {b} share a patient"


def test_random_split_is_70_10_20_by_patient_and_seeded():
    patients = _patients()
    parts = splits.random(patients, seed=3)
    _assert_partition(parts, patients)
    shares = [len(parts[k]) / len(patients) for k in ("train", "val", "test")]
    assert np.allclose(shares, (0.7, 0.1, 0.2), atol=0.01)
    again, other = splits.random(patients, seed=3), splits.random(patients, seed=4)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(parts["test"], other["test"])


def test_kfold_folds_partition_the_records():
    patients = _patients()
    tests = []
    for fold in range(5):
        parts = splits.kfold(patients, num_folds=5, fold=fold, seed=1)
        _assert_partition(parts, patients)
        tests.append(parts["test"])
        assert abs(len(parts["test"]) / len(patients) - 0.2) < 0.01
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(len(patients)))
    with pytest.raises(ValueError, match="fold 5"):
        splits.kfold(patients, num_folds=5, fold=5)


def test_official_split_on_the_real_lists():
    entries, _ = nih.read_data_entry(shared_data("nih", "Data_Entry_2017_v2020.csv.gz"))
    test = set(nih.read_image_list(shared_data("nih", "test_list.txt")))
    patients = np.array([e.patient_id for e in entries])
    is_test = np.array([e.image_index in test for e in entries])
    data = default.get_config().data  # the official protocol, seed 0
    metadata = types.SimpleNamespace(patient_id=patients, is_test=is_test)  # what split_records reads
    parts = splits.split_records(data, metadata)
    _assert_partition(parts, patients)
    assert len(parts["test"]) == 25_596 and is_test[parts["test"]].all()
    # By patient (seed 0): 69,216 / 17,308, not the capstone's 69,219 / 17,305, which cut train_val by image.
    assert (len(parts["train"]), len(parts["val"])) == (69_216, 17_308)
    data.protocol = "official_images"
    by_image = splits.split_records(data, metadata)
    assert (len(by_image["train"]), len(by_image["val"]), len(by_image["test"])) == (69_219, 17_305, 25_596)
    assert np.array_equal(by_image["test"], parts["test"])
    assert np.array_equal(np.sort(np.concatenate([by_image["train"], by_image["val"]])), np.flatnonzero(~is_test))
    assert set(patients[by_image["train"]]) & set(patients[by_image["val"]])  # by image: patients straddle the cut
    with pytest.raises(ValueError, match="unknown split protocol"):
        data.protocol = "bogus"
        splits.split_records(data, metadata)


def test_resample_k_is_the_random_split_of_seed_k():
    """Baltruschat's re-sampling: re-sampling K is the random 70/10/20 patient split with seed split_seed + K, so the
    five of a series differ and each is reproducible."""
    patients = _patients()
    metadata = types.SimpleNamespace(patient_id=patients, is_test=np.zeros(len(patients), bool))
    data = default.get_config().data
    data.protocol = "resample"
    tests = []
    for fold in range(5):
        data.fold = fold
        parts = splits.split_records(data, metadata)
        expected = splits.random(patients, fractions=(0.7, 0.1, 0.2), seed=fold)
        assert all(np.array_equal(parts[name], expected[name]) for name in ("train", "val", "test"))
        _assert_partition(parts, patients)
        tests.append(set(parts["test"].tolist()))
    assert all(a != b for i, a in enumerate(tests) for b in tests[i + 1:])
