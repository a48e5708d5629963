"""Prepare under interruption and on releases as people store them: a prepare killed at any point is redone, never
reported as done, to the same records as an uninterrupted one; symlinked folders, upper-case extensions, files and
list names without a CSV row, names found twice, 12-bit images in 16-bit PNGs, and a release with nothing usable."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import data_pipelines.prepare as prepare_module
from conftest import write_png
from cxrjax import cli
from cxrjax.data import atomic, images, shard_format
from data_pipelines import synthetic
from data_pipelines.prepare import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n")

# The child prepares with one step patched to SIGKILL itself, the points where a finished-looking folder could be
# left: mid-decoding (TFDS's incomplete folder), TFDS's folder published but not rewritten, a shard's rewrite
# written but not renamed (a .tmp beside it), the manifest written but not the report, all written but the marker.
KILL_POINTS = {
    "decoding": """
        decoded = chestxray14._decoded
        def patched(*args):
            for i, item in enumerate(decoded(*args)):
                if i == 5:
                    kill()
                yield item
        chestxray14._decoded = patched""",
    "before_rewrite": """
        chestxray14.store_uncompressed = lambda directory: kill()""",
    "rewrite": """
        replace = os.replace
        def patched(source, target):
            if ".array_record-" in target:
                kill()
            replace(source, target)
        os.replace = patched""",
    "after_manifest": """
        atomic.write_json = lambda path, content: kill()""",
    "before_marker": """
        write_json = atomic.write_json
        def patched(path, content):
            if path.endswith(shard_format.PREPARED_MARKER):
                kill()
            write_json(path, content)
        atomic.write_json = patched""",
}
CHILD = """
import os, signal, sys
from cxrjax import cli
from cxrjax.data import atomic, shard_format
from data_pipelines import chestxray14
def kill():
    os.kill(os.getpid(), signal.SIGKILL)
{patch}
sys.exit(cli.main(["prepare", "--source", sys.argv[1], "--data-dir", sys.argv[2], "--size", "32", "--workers", "1"]))
"""


def _records(builder_dir) -> list[dict]:
    source = tfds.builder_from_directory(builder_dir).as_data_source(split=shard_format.SPLIT)
    return [source[i] for i in range(len(source))]


def _assert_same_records(actual: list[dict], expected: list[dict]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.keys() == e.keys()
        for key in e:
            np.testing.assert_array_equal(a[key], e[key], err_msg=key)


@pytest.fixture(scope="module")
def small_release(tmp_path_factory):
    """24 synthetic images and their uninterrupted prepare: the records every resumed prepare must reproduce."""
    root = tmp_path_factory.mktemp("small")
    release = synthetic.write_release(root / "release", num_images=24, size=48, seed=11).directory
    reference = prepare(release, str(root / "reference"), size=32, num_workers=1)
    return release, _records(reference.builder_dir), open(os.path.join(reference.builder_dir, "manifest.csv")).read()


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_a_prepare_killed_at_any_point_is_redone_to_the_same_records(small_release, tmp_path, point, capsys):
    release, expected, manifest = small_release
    data_dir = str(tmp_path / "data")
    child = CHILD.format(patch=textwrap.dedent(KILL_POINTS[point]))
    killed = subprocess.run([sys.executable, "-c", child, release, data_dir], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    target = shard_format.builder_dir(data_dir, 32)
    assert not shard_format.is_prepared(target)
    if os.path.isdir(target):  # TFDS published its folder: readers call it interrupted, not missing or finished
        with pytest.raises(FileNotFoundError, match="holds an interrupted prepare"):
            shard_format.open_shards(target)
    if point == "rewrite":
        assert any(name.endswith(".tmp") for name in os.listdir(target))  # the half-done rewrite the rerun removes

    assert cli.main(["prepare", "--source", release, "--data-dir", data_dir, "--size", "32", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "24 CSV rows: 24 written" in out and "already prepared" not in out
    _assert_same_records(_records(target), expected)
    assert open(os.path.join(target, "manifest.csv")).read() == manifest
    left = [name for name in os.listdir(os.path.dirname(target)) if not name.endswith(".lock")]
    assert left == [shard_format.VERSION]  # no incomplete.* folder left
    assert not [name for name in os.listdir(target) if name.endswith(".tmp")]
    assert json.load(open(os.path.join(target, shard_format.PREPARED_MARKER)))["records"] == 24
    assert shard_format.open_shards(target).metadata.image_index.size == 24
    assert cli.main(["prepare", "--source", release, "--data-dir", data_dir, "--size", "32"]) == 0
    assert f"shards already prepared in {target}; nothing to do" in capsys.readouterr().out


def test_a_file_is_written_whole_or_not_at_all(tmp_path):
    """What every report, manifest, metrics log and weights file is written through: an error halfway leaves the
    old file as it was and no temporary file; success replaces it whole."""
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic.written_whole(path) as f:
        f.write("half of the new")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]
    with atomic.written_whole(path) as f:
        f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["report.json"]


def test_a_second_prepare_of_the_same_folder_stops_instead_of_removing_it(small_release, tmp_path, capsys):
    """A prepare running elsewhere holds the folder's lock: a second one must not take its folder for an interrupted
    prepare and remove it. One line, rc 1, the other's folder untouched; once the lock is free, it prepares."""
    release, expected, _ = small_release
    data_dir = str(tmp_path / "data")
    target = shard_format.builder_dir(data_dir, 32)
    arguments = ["prepare", "--source", release, "--data-dir", data_dir, "--size", "32", "--workers", "1"]
    with prepare_module.exclusive(target):
        os.makedirs(target)
        open(os.path.join(target, "dataset_info.json"), "w").close()  # as TFDS leaves it before the rewrite
        assert cli.main(arguments) == 1
        assert _one_line_error(capsys) == (f"cxrjax prepare: error: another `cxrjax prepare` of {target} is running; "
                                           "let it finish, then run this one again")
        assert os.listdir(target) == ["dataset_info.json"]
    assert cli.main(arguments) == 0
    _assert_same_records(_records(target), expected)


def _release(root, rows: list[str], train_val: list[str], test: list[str]) -> str:
    release = str(root)
    os.makedirs(release, exist_ok=True)
    with open(os.path.join(release, "Data_Entry_2017_v2020.csv"), "w") as f:
        f.write(HEADER + "".join(f"{name},Mass,0,{i + 1},40,F,PA,64,64,0.1,0.1\n" for i, name in enumerate(rows)))
    for name, names in (("train_val_list.txt", train_val), ("test_list.txt", test)):
        with open(os.path.join(release, name), "w") as f:
            f.write("".join(f"{n}\n" for n in names))
    return release


def test_a_release_as_people_store_it_is_accounted_for(tmp_path):
    """Images in a symlinked folder (the release's own layout elsewhere on disk), an upper-case .PNG, a file no CSV
    row names, list names no CSV row has, one name twice as identical copies (used) and twice as different files
    (not written), and 12-bit X-rays in 16-bit PNGs, with and without sBIT: each in the report, none lost."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    twelve = rng.integers(0, 4096, (64, 64), dtype=np.uint16)
    twelve[0, 0] = 4000  # the maximum, below 4095, with sBIT stating 12 bits
    elsewhere = tmp_path / "disk2" / "images"
    write_png(str(elsewhere / "00000001_000.png"), gray)
    write_png(str(elsewhere / "00000002_000.PNG"), gray)
    write_png(str(elsewhere / "00000009_000.png"), gray)  # no CSV row
    write_png(str(elsewhere / "00000003_000.png"), twelve, significant_bits=12)
    write_png(str(elsewhere / "00000004_000.png"), twelve.copy())  # no sBIT: 4000 needs 12 bits
    rows = ["00000001_000.png", "00000002_000.png", "00000003_000.png", "00000004_000.png", "00000005_000.png",
            "00000006_000.png"]
    release = _release(tmp_path / "release", rows, rows[:4] + ["00000007_000.png"], rows[4:] + ["00000008_000.png"])
    os.makedirs(os.path.join(release, "images_001"))
    os.symlink(elsewhere, os.path.join(release, "images_001", "images"))
    write_png(os.path.join(release, "copy_a", "00000005_000.png"), gray)
    write_png(os.path.join(release, "copy_b", "00000005_000.png"), gray)  # byte-identical: used once
    write_png(os.path.join(release, "copy_a", "00000006_000.png"), gray)
    write_png(os.path.join(release, "copy_b", "00000006_000.png"), 255 - gray)  # different: which is right is unknown

    data_dir = tmp_path / "data"
    prepared = prepare(release, str(data_dir), size=32, num_workers=1)
    report = json.load(open(data_dir / "prepare_report.json"))
    assert report["written"] == rows[:5] and not report["missing"]
    assert [f["image"] for f in report["failed"]] == ["00000006_000.png"]
    assert report["failed"][0]["reason"].startswith("different files of this name in ")
    assert report["images_without_csv_row"] == [os.path.join(release, "images_001", "images", "00000009_000.png")]
    assert report["unknown_list_names"] == [{"list": "train_val_list.txt", "image": "00000007_000.png"},
                                            {"list": "test_list.txt", "image": "00000008_000.png"}]
    duplicates = {d["image"]: d for d in report["duplicate_names"]}
    assert duplicates["00000005_000.png"]["used"] == os.path.join(release, "copy_a", "00000005_000.png")
    assert len(duplicates["00000005_000.png"]["paths"]) == 2 and duplicates["00000006_000.png"]["used"] is None
    assert report["high_bit_depth"] == [{"image": "00000003_000.png", "bits": 12, "from": "sBIT"},
                                        {"image": "00000004_000.png", "bits": 12, "from": "maximum value"}]
    assert report["summary"] == prepared.report.summary() == (
        "6 CSV rows: 5 written, 0 missing, 1 failed; image files without a CSV row: 1; split-list names without a "
        "CSV row: 2; file names found in more than one folder: 2; 16-bit images scaled by their real bit depth: 2")

    records = {r["image_index"].decode(): r["image"][..., 0] for r in _records(prepared.builder_dir)}
    expected = np.asarray(Image.fromarray(twelve.astype(np.float32) * (255 / 4095), mode="F").resize(
        (32, 32), Image.Resampling.BOX))
    for name in ("00000003_000.png", "00000004_000.png"):  # on the 0..255 scale, not 16x darker
        assert np.abs(records[name].astype(int) - np.rint(expected)).max() <= 1 and records[name].max() > 200
    assert np.array_equal(records["00000002_000.png"], records["00000001_000.png"])  # the .PNG was found
    for name in ("00000003_000.png", "00000004_000.png"):  # predict reads a file on the scale prepare wrote it
        pixels = images.read_pixels(elsewhere / name)
        np.testing.assert_allclose(pixels, twelve * np.float32(255 / 4095), rtol=1e-6)


def _one_line_error(capsys) -> str:
    """The one line on stderr besides the progress bars ("prepare: decoding to 32²: 100% 2/2 [...]")."""
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if not re.search(r": +\d+% \d+/\d+ \[", line)]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize("images", ["none", "undecodable"])
def test_a_release_with_no_usable_image_writes_the_report_and_one_line(tmp_path, capsys, images):
    """No image file at all (images in the wrong place), or only files that do not decode: the report is written,
    one line says where images were looked for, rc 1, and nothing passes for prepared shards."""
    rows = ["00000001_000.png", "00000002_000.png"]
    release = _release(tmp_path / "release", rows, rows[:1], rows[1:])
    if images == "undecodable":
        for name in rows:
            os.makedirs(os.path.join(release, "images"), exist_ok=True)
            with open(os.path.join(release, "images", name), "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n not an image")
    data_dir = str(tmp_path / "data")
    assert cli.main(["prepare", "--source", release, "--data-dir", data_dir, "--size", "32", "--workers", "1"]) == 1
    line = _one_line_error(capsys)
    assert f"no usable image in {release}: looked for *.png under {release}, following symlinked folders" in line
    assert f"see {data_dir}/prepare_report.json" in line
    report = json.load(open(os.path.join(data_dir, "prepare_report.json")))
    assert report["shards"] is None and not report["written"]
    if images == "none":
        assert report["missing"] == rows and "2 CSV rows: 0 written, 2 missing, 0 failed" in line
    else:
        assert [f["image"] for f in report["failed"]] == rows and "0 written, 0 missing, 2 failed" in line
    target = shard_format.builder_dir(data_dir, 32)
    assert not os.path.exists(target)
