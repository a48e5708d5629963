"""Prepare: release → ArrayRecord shards readable by plain TFDS; every CSV row written or reported."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from array_record.python import array_record_module
from PIL import Image

from conftest import shared_data
from cxrjax.data import nih
from cxrjax.data.decode import load_image
from cxrjax.data.findings import FINDINGS
from data_pipelines import synthetic
from data_pipelines.chestxray14 import store_uncompressed
from data_pipelines.prepare import prepare


def _records(builder_dir):
    source = tfds.builder_from_directory(builder_dir).as_data_source(split="images")
    return [source[i] for i in range(len(source))]


def test_synthetic_round_trip(synthetic_release, prepared_shards):
    data_dir, builder_dir = prepared_shards
    entries, _ = nih.read_data_entry(os.path.join(synthetic_release, "Data_Entry_2017_v2020.csv"))
    test = set(nih.read_image_list(os.path.join(synthetic_release, "test_list.txt")))
    records = _records(builder_dir)
    assert len(records) == len(entries) == 400
    for entry, record in zip(entries, records):  # records keep the CSV's order
        assert record["image_index"].decode() == entry.image_index
        assert np.array_equal(record["labels"], entry.labels)
        assert (record["patient_id"], record["follow_up"]) == (entry.patient_id, entry.follow_up)
        assert record["age"] == np.float32(entry.age)
        assert nih.SEXES[record["sex"]] == entry.sex and nih.VIEWS[record["view"]] == entry.view
        assert record["official_split"] == int(entry.image_index in test)
    expected = load_image(os.path.join(synthetic_release, "images", entries[7].image_index), 32)
    assert records[7]["image"].shape == (32, 32, 1) and np.array_equal(records[7]["image"], expected)
    report = json.load(open(os.path.join(data_dir, "prepare_report.json")))
    assert len(report["written"]) == 400 and not report["missing"] and not report["failed"]
    manifest = open(os.path.join(data_dir, "manifest.csv")).read().splitlines()
    assert manifest[0].startswith("record,image_index") and len(manifest) == 401
    assert manifest[8].split(",")[1] == entries[7].image_index
    shard_files = [name for name in os.listdir(builder_dir) if ".array_record-" in name]
    assert shard_files and all("uncompressed" in array_record_module.ArrayRecordReader(
        os.path.join(builder_dir, name)).writer_options_string().split(",") for name in shard_files)


def test_store_uncompressed_keeps_every_record_in_order(tmp_path):
    """TFDS writes zstd chunks; the rewrite keeps the records, byte for byte and in order, across copy chunks."""
    path = str(tmp_path / "x.array_record-00000-of-00001")
    records = [np.random.default_rng(i).integers(0, 256, 100 + i, np.uint8).tobytes() for i in range(600)]
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    for record in records:
        writer.write(record)
    writer.close()
    (tmp_path / "dataset_info.json").write_text("{}")  # other files are left alone
    for _ in range(2):  # the second call finds the shard uncompressed already
        store_uncompressed(str(tmp_path))
        reader = array_record_module.ArrayRecordReader(path)
        assert "uncompressed" in reader.writer_options_string().split(",")
        assert reader.read(0, reader.num_records()) == records
        reader.close()
    assert sorted(os.listdir(tmp_path)) == ["dataset_info.json", "x.array_record-00000-of-00001"]


def _write_png(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_every_row_is_written_or_reported(tmp_path):
    """Nested images_00x/images/ layout, every supported mode, and each kind of bad row."""
    release = tmp_path / "release"
    images = release / "images_001" / "images"
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    _write_png(images / "00000001_000.png", gray)
    _write_png(images / "00000001_001.png", np.dstack([gray, np.full_like(gray, 255)]), "LA")
    _write_png(images / "00000001_002.png", np.dstack([gray, gray, gray, np.full_like(gray, 255)]), "RGBA")
    _write_png(images / "00000002_000.png", gray.astype(np.uint16) * 257)  # 16-bit (mode I;16)
    _write_png(images / "00000002_001.png", np.dstack([gray, gray // 2, gray // 3]), "RGB")
    Image.fromarray(gray).convert("P").save(images / "00000003_000.png")  # palette: not a radiograph mode
    (images / "00000003_001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    names = ["00000001_000.png", "00000001_001.png", "00000001_002.png", "00000002_000.png", "00000002_001.png",
             "00000003_000.png", "00000003_001.png", "00000004_000.png", "00000005_000.png"]
    rows = [f"{n},Mass,0,{n[:8].lstrip('0')},40,F,PA,64,64,0.1,0.1" for n in names]
    rows.append("00000006_000.png,Tumour,0,6,40,F,PA,64,64,0.1,0.1")
    (release / "Data_Entry_2017_v2020.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n" + "\n".join(rows) + "\n")
    _write_png(release / "images" / "00000005_000.png", gray)  # present but in neither split list
    (release / "train_val_list.txt").write_text("\n".join(names[:5] + names[7:8] + ["00000006_000.png"]) + "\n")
    (release / "test_list.txt").write_text("\n".join(names[5:7]) + "\n")

    prepared = prepare(str(release), str(tmp_path / "data"), size=32, num_workers=1)
    report = prepared.report
    assert report.written == names[:5]
    assert report.missing == ["00000004_000.png"]
    reasons = {f["image"]: f["reason"] for f in report.failed}
    assert set(reasons) == {"00000003_000.png", "00000003_001.png", "00000005_000.png", "00000006_000.png"}
    assert "mode 'P'" in reasons["00000003_000.png"] and "Tumour" in reasons["00000006_000.png"]
    assert "neither" in reasons["00000005_000.png"]
    assert report.summary() == ("10 CSV rows: 5 written, 1 missing, 4 failed; 16-bit images scaled by their real bit "
                                "depth: 1")
    assert report.high_bit_depth == [{"image": "00000002_000.png", "bits": 16, "from": "maximum value"}]
    records = _records(prepared.builder_dir)
    expected = load_image(str(images / "00000001_000.png"), 32)
    for record in records[:4]:  # L, LA, RGBA (R = G = B) and 16-bit all hold the same gray picture
        assert np.abs(record["image"].astype(int) - expected).max() <= 1
    assert not np.array_equal(records[4]["image"], expected)  # a real RGB image goes through luma
    assert prepare(str(release), str(tmp_path / "data"), size=32).report is None  # already prepared: no rework


@pytest.mark.parametrize("labels,size", [("v2020", 256), ("2017", 512)])
def test_real_miniature_release(tmp_path, labels, size):
    nih_dir = shared_data("nih")
    prepared = prepare(nih_dir, str(tmp_path), size=size, labels=labels, num_workers=1)
    report = prepared.report
    assert len(report.written) == 80 and len(report.missing) == 112_040 and not report.failed
    records = {r["image_index"].decode(): r for r in _records(prepared.builder_dir)}
    assert len(records) == 80
    entries = {e.image_index: e for e in nih.read_data_entry(
        nih.find_release_file(nih_dir, nih.DATA_ENTRY_FILES[labels]))[0]}
    for name in ("00000100_000.png", "00001369_000.png", "00002578_000.png", "00004934_000.png",
                 "00005224_000.png", "00005813_000.png"):  # the release's RGBA images
        with Image.open(os.path.join(nih_dir, "images", name)) as image:
            assert image.mode == "RGBA"
            red = np.asarray(image)[..., 0]
        record = records[name]
        expected = np.asarray(Image.fromarray(red).resize((size, size), Image.Resampling.BOX))
        assert np.abs(record["image"][..., 0].astype(int) - expected).max() <= 1
        assert record["image"].std() > 20  # real radiograph pixels, not a flat alpha plane
        assert np.array_equal(record["labels"], entries[name].labels)
    positives = np.stack([r["labels"] for r in records.values()]).sum(axis=0)
    assert (positives >= 5).all(), dict(zip(FINDINGS, positives))
    assert sum(r["official_split"] for r in records.values()) == 8
    shutil.rmtree(tmp_path)


def test_a_release_without_the_labels_asked_for_is_refused_before_any_work(tmp_path):
    release = synthetic.write_release(tmp_path / "release", num_images=12, size=32, seed=3).directory
    os.rename(os.path.join(release, "Data_Entry_2017_v2020.csv"), os.path.join(release, "Data_Entry_2017.csv"))
    data_dir = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match=r"Data_Entry_2017_v2020.csv \(the v2020 labels\) not found in .*, "
                                                r"but Data_Entry_2017.csv is: prepare with --labels 2017"):
        prepare(release, str(data_dir), size=32)
    assert not data_dir.exists()  # nothing was started
    os.remove(os.path.join(release, "test_list.txt"))
    with pytest.raises(FileNotFoundError, match="test_list.txt not found"):
        prepare(release, str(data_dir), size=32, labels="2017")
    assert not data_dir.exists()
