"""Grain pipelines: per-epoch reshuffle without partial batches, per-process shares, padded eval, resumable."""

import numpy as np

from cxrjax.configs import default
from cxrjax.data import pipeline, shard_format, splits


def _split(shards, protocol: str) -> dict[str, np.ndarray]:
    """The records of each part under `protocol` with the base config's other split settings."""
    data = default.get_config().data
    data.protocol = protocol
    return splits.split_records(data, shards.metadata)


def _train(shards, records, **kwargs):
    options = dict(global_batch=16, crop=28, num_steps=2 * (len(records) // 16), seed=0)
    return pipeline.train_dataset(shards, records, **(options | kwargs))


def test_training_epochs_reshuffle_and_drop_the_partial_batch(prepared_shards):
    shards = shard_format.open_shards(prepared_shards[1])
    records = _split(shards, "official")["train"]
    batches = list(_train(shards, records))
    steps = len(records) // 16
    assert len(batches) == 2 * steps and len(records) % 16  # a partial batch exists and is dropped
    seen = np.concatenate([b["record"] for b in batches]).reshape(2, steps * 16)
    for epoch in seen:
        assert len(set(epoch)) == steps * 16 and set(epoch) <= set(records)  # no repeats inside an epoch
    assert not np.array_equal(seen[0], seen[1])  # reshuffled
    first = batches[0]
    assert first["image"].shape == (16, 28, 28, 1) and first["image"].dtype == np.uint8
    assert np.array_equal(first["labels"], shards.metadata.labels[first["record"]])


def test_processes_share_each_global_batch(prepared_shards):
    shards = shard_format.open_shards(prepared_shards[1])
    records = _split(shards, "random")["train"]
    whole = list(_train(shards, records, num_steps=3))
    parts = [list(_train(shards, records, num_steps=3, process_index=p, process_count=4)) for p in range(4)]
    for step in range(3):  # process p's batch is rows [4p, 4p + 4) of the one-process global batch, augmented alike
        for name in ("record", "image"):
            np.testing.assert_array_equal(np.concatenate([part[step][name] for part in parts]), whole[step][name])


def test_augmentation_crops_and_flips(prepared_shards):
    shards = shard_format.open_shards(prepared_shards[1])
    record = int(_split(shards, "official")["train"][0])
    image = shards.source[record]["image"]
    crops = [pipeline.TrainAugment(28)(image, np.random.default_rng(s).random(4)) for s in range(40)]
    windows = {(t, l, f) for t in range(5) for l in range(5) for f in (False, True)}
    found = set()
    for crop in crops:
        for t, l, f in windows:
            window = image[t:t + 28, l:l + 28]
            if np.array_equal(crop, window[:, ::-1] if f else window):
                found.add((t, l, f))
                break
        else:
            raise AssertionError("a crop is not a window of the image")
    assert len(found) > 10 and {f for _, _, f in found} == {False, True}


def test_training_batches_are_the_augmented_records(prepared_shards):
    """Row r of global batch s is its record's image through `TrainAugment` with row r of batch s's draws, and its
    labels and metadata are the record's."""
    shards = shard_format.open_shards(prepared_shards[1])
    records = _split(shards, "official")["train"]
    augment = pipeline.TrainAugment(28, rotation=5.0)
    batches = list(_train(shards, records, num_steps=3, augment=augment, seed=4))
    for step, batch in enumerate(batches):
        draws = pipeline.augment_draws(4, step, 16)
        for row, record in enumerate(batch["record"]):
            decoded = shards.source[int(record)]
            expected = augment(decoded["image"], draws[row])
            np.testing.assert_array_equal(batch["image"][row], expected)
            np.testing.assert_array_equal(batch["labels"][row], decoded["labels"])
            assert (batch["age"][row], batch["sex"][row], batch["view"][row]) == (
                decoded["age"], decoded["sex"], decoded["view"])
    assert {name: batches[0][name].dtype for name in batches[0]} == {
        "image": np.uint8, "labels": np.uint8, "age": np.float32, "sex": np.int32, "view": np.int32,
        "record": np.int64}


def test_eval_is_ordered_padded_and_masked(prepared_shards):
    shards = shard_format.open_shards(prepared_shards[1])
    records = _split(shards, "official")["test"]
    batches = list(pipeline.eval_dataset(shards, records, global_batch=32, crop=28))
    assert all(b["image"].shape == (32, 28, 28, 1) for b in batches)
    mask = np.concatenate([b["mask"] for b in batches]).astype(bool)
    order = np.concatenate([b["record"] for b in batches])
    assert len(order) == -(-len(records) // 32) * 32 and mask.sum() == len(records)
    assert np.array_equal(order[mask], records) and not mask[len(records):].any()
    centre = shards.source[int(records[0])]["image"][2:30, 2:30]
    assert np.array_equal(batches[0]["image"][0], centre)


def test_iterator_state_restores_the_exact_position(prepared_shards):
    shards = shard_format.open_shards(prepared_shards[1])
    records = _split(shards, "official")["train"]
    dataset = _train(shards, records)
    iterator = iter(dataset)
    for _ in range(5):
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(3)]
    resumed = iter(dataset)
    resumed.set_state(state)
    for batch in expected:
        again = next(resumed)
        assert np.array_equal(batch["record"], again["record"]) and np.array_equal(batch["image"], again["image"])


def test_centre_crop_with_rotation(prepared_shards):
    shards = shard_format.open_shards(prepared_shards[1])
    image = shards.source[0]["image"]
    augment = pipeline.TrainAugment(28, flip=False, random_crop=False, rotation=10.0)
    outputs = [augment(image, np.random.default_rng(s).random(4)) for s in range(6)]
    assert all(o.shape == (28, 28, 1) and o.dtype == np.uint8 for o in outputs)
    assert len({o.tobytes() for o in outputs}) == 6  # a different angle each time
    unrotated = pipeline.TrainAugment(28, flip=False, random_crop=False)(image, np.random.default_rng(0).random(4))
    assert np.array_equal(unrotated, image[2:30, 2:30])
    assert np.abs(outputs[0].astype(int) - image[2:30, 2:30]).mean() < 40  # a small rotation, not noise


def test_the_pipelines_own_decoding_equals_tfds_decoding(prepared_shards):
    """`decode_fields` (what the pipelines read) gives, for every record, exactly what TFDS's decoding gives."""
    shards = shard_format.open_shards(prepared_shards[1])
    for record in range(len(shards.metadata)):
        ours, theirs = shard_format.decode_fields(shards.serialized[record], shards.size), shards.source[record]
        assert ours["image"].shape == (32, 32, 1)
        assert [ours[name].dtype for name in ("image", "labels", "age", "sex", "view")] == [
            np.uint8, np.uint8, np.float32, np.int32, np.int32]
        for name in ("image", "labels", "age", "sex", "view"):
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"record {record}: {name}")


def test_pixels_stored_as_an_int64_list_still_decode():
    """Shards of version 1.0.0 stored pixels as an int64 list (TFDS's default encoding of a uint8 tensor)."""
    from tensorflow_datasets.proto import tf_example_pb2

    pixels = np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 16
    example = tf_example_pb2.Example()
    feature = example.features.feature
    feature["image"].int64_list.value.extend(pixels.ravel().tolist())
    feature["labels"].int64_list.value.extend([0, 1] * 7)
    feature["age"].float_list.value.append(58.0)
    feature["sex"].int64_list.value.append(1)
    feature["view"].int64_list.value.append(0)
    decoded = shard_format.decode_fields(example.SerializeToString(), 4)
    np.testing.assert_array_equal(decoded["image"], pixels)
    np.testing.assert_array_equal(decoded["labels"], [0, 1] * 7)
    assert (decoded["age"], decoded["sex"], decoded["view"]) == (58.0, 1, 0)


def test_worker_processes_make_the_same_batches_and_resume(prepared_shards):
    """grain worker processes (`workers=2`) give the in-process batches in order, and a saved position resumes."""
    shards = shard_format.open_shards(prepared_shards[1])
    records = _split(shards, "official")["train"]
    expected = list(_train(shards, records, num_steps=6))
    dataset = _train(shards, records, num_steps=6, workers=2)
    iterator = iter(dataset)
    first = [next(iterator) for _ in range(3)]
    state = iterator.get_state()
    iterator.close()
    resumed = iter(dataset)
    resumed.set_state(state)
    rest = list(resumed)
    assert len(first) + len(rest) == 6
    for batch, again in zip(expected, first + rest):
        for name in batch:
            np.testing.assert_array_equal(batch[name], again[name], err_msg=name)
    test = _split(shards, "official")["test"]
    for batch, again in zip(pipeline.eval_dataset(shards, test, global_batch=32, crop=28),
                            pipeline.eval_dataset(shards, test, global_batch=32, crop=28, workers=2), strict=True):
        for name in batch:
            np.testing.assert_array_equal(batch[name], again[name], err_msg=name)
