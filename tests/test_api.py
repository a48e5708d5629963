"""The Python API as a notebook uses it (`cxrjax.load`, `predict`, `gradcam`, the building blocks), and the pictures
a reader judges a model by: Grad-CAM pictures of the findings that pass their operating points, with the expert's
box drawn; `localize --out`'s CAM box against the expert box."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import cxrjax
from conftest import train_one_epoch
from cxrjax import cli
from cxrjax.data import nih
from cxrjax.data.findings import FINDINGS
from cxrjax.inference import explain, pictures
from data_pipelines import synthetic
from data_pipelines.prepare import prepare

EXPERT_GREEN = np.array([0x00, 0xE6, 0x76])  # pictures.BOX_STYLES["expert"]


@pytest.fixture(scope="module")
def workdir(synthetic_release, tmp_path_factory):
    """ResNet-18 after one epoch on 56² crops of 64² shards: a 2×2 final feature map (at 32², ResNet's is 1×1 and
    every Grad-CAM map is flat)."""
    data_dir = str(tmp_path_factory.mktemp("api_data"))
    prepare(synthetic_release, data_dir, size=64, num_workers=1)
    return train_one_epoch(data_dir, str(tmp_path_factory.mktemp("api_run")), size=64, crop=56)


@pytest.fixture(scope="module")
def radiographs(tmp_path_factory):
    """Three synthetic radiographs of different sizes, as PNG files and as the arrays they hold."""
    folder = tmp_path_factory.mktemp("radiographs")
    rng = np.random.default_rng(5)
    arrays = []
    for i, size in enumerate((64, 80, 48)):
        labels = np.zeros(len(FINDINGS), np.uint8)
        labels[FINDINGS.index("Cardiomegaly")] = i % 2
        image, _ = synthetic.draw_image(labels, size, rng)
        arrays.append(image)
    paths = []
    for i, array in enumerate(arrays):
        paths.append(str(folder / f"0000000{i}_000.png"))
        Image.fromarray(array).save(paths[-1])
    return paths, arrays


def test_predict_paths_pil_images_and_arrays_like_the_command(workdir, radiographs, capsys):
    paths, arrays = radiographs
    run = cxrjax.load(workdir)
    from_paths = run.predict(paths)
    from_pil = run.predict([Image.open(p) for p in paths])
    from_arrays = run.predict(arrays)
    assert cli.main(["predict", *paths, "--workdir", workdir, "--json"]) == 0
    command = json.loads(capsys.readouterr().out)["predictions"]
    for mine, pil, array, theirs in zip(from_paths, from_pil, from_arrays, command):
        expected = np.array([theirs["probabilities"][f] for f in FINDINGS], np.float32)
        np.testing.assert_array_equal(mine.probabilities, expected)  # the same batches through the same program
        np.testing.assert_array_equal(pil.probabilities, mine.probabilities)
        np.testing.assert_array_equal(array.probabilities, mine.probabilities)
        assert list(mine.positive) == theirs["positive"] == list(pil.positive)
    single = run.predict(arrays[0])  # one image, not a list
    assert len(single) == 1 and single[0].path == "<array 0>"
    decided = [f for f, p, t in zip(FINDINGS, from_paths[0].probabilities, run.thresholds.values) if p >= t]
    assert list(from_paths[0].positive) == decided and run.thresholds.rule == "youden"


def test_bad_images_are_refused_with_one_line(workdir):
    run = cxrjax.load(workdir)
    with pytest.raises(ValueError, match="expected a uint8 array"):
        run.predict(np.zeros((8, 8), np.float32))
    with pytest.raises(TypeError, match="expected a file path, a PIL image or a uint8 array"):
        run.predict([3])
    with pytest.raises(ValueError, match="unknown finding 'Cardiomegally'"):
        run.gradcam(np.zeros((8, 8), np.uint8), "Cardiomegally")


def test_gradcam_covers_the_whole_image_in_its_own_frame(workdir, radiographs):
    paths, arrays = radiographs
    run = cxrjax.load(workdir)
    assert explain.accepts_field_of_view(run.run)  # ResNet-18 + GAP takes the uncropped 64² image
    finding = FINDINGS[int(np.argmax(run.predict(paths[1])[0].probabilities))]
    heat = run.gradcam(paths[1], finding)
    assert heat.shape == arrays[1].shape and heat.min() == 0.0 and heat.max() == 1.0
    np.testing.assert_array_equal(run.gradcam(arrays[1], finding), heat)
    # No hard edge where the 56² centre crop of the 64² model input ends: the map goes on to the image's border.
    assert heat[:5].max() > 0 and heat[-5:].max() > 0 and heat[:, :5].max() > 0 and heat[:, -5:].max() > 0


def test_building_blocks_under_stable_names():
    model = cxrjax.create_model("resnet18", len(FINDINGS))
    assert model.num_classes == 14
    assert "bce" in cxrjax.losses.LOSSES and callable(cxrjax.losses.build_objective)
    labels = np.array([[1] + [0] * 13, [0] * 14, [1] + [0] * 13, [0] * 14])
    scores = np.array([[0.9] + [0.1] * 13, [0.2] * 14, [0.8] + [0.3] * 13, [0.1] * 14])
    assert cxrjax.metrics.summarize(labels, scores)["auc"]["Atelectasis"] == 1.0
    assert callable(cxrjax.evaluate) and callable(cxrjax.train_and_evaluate)
    assert cxrjax.Metadata(age=50.0, sex="F", view="PA").view == "PA"
    with pytest.raises(AttributeError):
        cxrjax.no_such_name


def _green_pixels(path) -> int:
    with Image.open(path) as picture:
        rgb = np.asarray(picture.convert("RGB")).astype(int)
    return int((np.abs(rgb - EXPERT_GREEN).max(axis=-1) < 12).sum())


def test_cam_pictures_of_the_findings_above_their_operating_points(workdir, radiographs, tmp_path):
    paths, arrays = radiographs
    run = cxrjax.load(workdir)
    predictions = run.predict(paths)
    written, errors = explain.write_cam_overlays(run.run, paths, str(tmp_path / "above"))
    expected = [explain.cam_filename(p.path, f) for p in predictions for f in FINDINGS if f in p.positive]
    assert not errors and sorted(map(os.path.basename, written)) == sorted(expected)
    top, _ = explain.write_cam_overlays(run.run, paths, str(tmp_path / "top"), top_k=2)
    assert len(top) == 2 * len(paths)
    best = int(np.argmax(predictions[0].probabilities))
    assert os.path.basename(top[0]) == explain.cam_filename(paths[0], FINDINGS[best])  # most probable first
    # The expert's box of the first image is drawn in the expert colour, and only where there is one.
    box = nih.Box(os.path.basename(paths[0]), "Effusion", 10.0, 12.0, 30.0, 20.0)
    (with_box,), _ = explain.write_cam_overlays(run.run, paths[:1], str(tmp_path / "box"), findings=("Effusion",),
                                                boxes=[box])
    (without,), _ = explain.write_cam_overlays(run.run, paths[:1], str(tmp_path / "nobox"), findings=("Effusion",))
    assert _green_pixels(with_box) > 100 and _green_pixels(without) == 0
    with Image.open(with_box) as picture:  # a 64² file shown at 512 pixels, with room for the title and colour bar
        width, height = picture.size
    assert (width, height) == pictures.picture_size(64, 64)
    assert width > 512 and height > 512


def test_predict_command_writes_the_pictures_it_says(workdir, radiographs, tmp_path, capsys):
    paths, _ = radiographs
    out = tmp_path / "cams"
    assert cli.main(["predict", paths[0], "--workdir", workdir, "--cam", str(out), "--findings",
                     "Effusion,Mass"]) == 0
    assert sorted(os.listdir(out)) == [explain.cam_filename(paths[0], f) for f in ("Effusion", "Mass")]
    assert f"2 Grad-CAM pictures (the findings asked for) in {out}" in capsys.readouterr().err


def test_localize_writes_a_picture_per_expert_box(workdir, synthetic_release, tmp_path, capsys):
    boxes = os.path.join(synthetic_release, "BBox_List_2017.csv")
    out = tmp_path / "boxes"
    assert cli.main(["localize", "--workdir", workdir, "--boxes", boxes, "--out", str(out)]) == 0
    test_names = set(open(os.path.join(synthetic_release, "test_list.txt")).read().split())
    expected = [b for b in nih.read_boxes(boxes) if b.image_index in test_names]
    files = sorted(os.listdir(out))
    assert len(files) == len(expected) > 0
    assert all(_green_pixels(out / name) > 0 for name in files[:3])  # the expert box is drawn
    assert f"{len(expected)} pictures of CAM boxes against expert boxes in {out}" in capsys.readouterr().err
