"""Inference from a run directory on image files: PNG (release modes), JPEG, DICOM; unreadable files; thresholds;
formatters; Grad-CAM overlay files; the localisation check end to end. One tiny checkpoint serves the module (its
predictions need not be good, only computed the way evaluation computes them)."""

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from conftest import assert_same_forward, shared_data, train_one_epoch, write_png
from cxrjax.configs import default
from cxrjax.data import images, nih, shard_format
from cxrjax.data.findings import FINDINGS
from cxrjax.data.shard_format import builder_dir
from cxrjax.evaluation.load import load_run
from cxrjax.inference import explain, localize, pictures, predict
from cxrjax.inference.predictor import Predictor
from cxrjax.training import train
from data_pipelines import synthetic


@pytest.fixture(scope="module")
def workdir(prepared_shards, tmp_path_factory):
    return train_one_epoch(prepared_shards[0], str(tmp_path_factory.mktemp("predict_run")))


@pytest.fixture(scope="module")
def inference(workdir):
    return load_run(workdir)


@pytest.fixture(scope="module")
def radiograph():
    """A synthetic radiograph whose darkest pixel is 0 and brightest 255, so min-max keeps its values."""
    labels = np.zeros(len(FINDINGS), np.uint8)
    labels[FINDINGS.index("Cardiomegaly")] = 1
    image, _ = synthetic.draw_image(labels, 64, np.random.default_rng(3))
    image[0, 0], image[0, 1] = 0, 255
    return image


def _save_png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return str(path)


def _save_dicom(path, stored: np.ndarray, photometric: str, bits_stored: int, **attributes):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    if stored is not None:
        ds.set_pixel_data(stored.astype(np.uint16), photometric, bits_stored)
    for name, value in attributes.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def _by_path(results):
    return {r.path: r.probabilities for r in results}


def test_release_pngs_including_rgba(inference, tmp_path):
    rgba_path = shared_data("nih", "images", "00000100_000.png")
    assert Image.open(rgba_path).mode == "RGBA"
    as_l = _save_png(tmp_path / "as_l.png", np.asarray(Image.open(rgba_path))[..., 0], "L")
    other = shared_data("nih", "images", "00000442_000.png")
    results, errors = predict.predict_files(inference, [rgba_path, as_l, other], batch_size=2)
    assert not errors and [r.path for r in results] == [rgba_path, as_l, other]
    assert all(r.probabilities.shape == (14,) and ((0 <= r.probabilities) & (r.probabilities <= 1)).all()
               for r in results)
    assert results[0].source_size == (1024, 1024)
    np.testing.assert_array_equal(images.load_input(rgba_path, 32, 28)[0], images.load_input(as_l, 32, 28)[0])
    assert_same_forward(results[0].probabilities, results[1].probabilities)  # R = G = B → same pixels, other row


def test_file_reaches_the_model_as_its_shard_record(synthetic_release, prepared_shards):
    """A release PNG read by `cxrjax.data.images` equals its shard record after the evaluation centre crop."""
    from cxrjax.data import shard_format
    from cxrjax.data.shard_format import builder_dir

    shards = shard_format.open_shards(builder_dir(prepared_shards[0], 32, "v2020"))
    for record in (0, 7, 123):
        name = shards.metadata.image_index[record]
        pixels, size = images.load_input(os.path.join(synthetic_release, "images", name), 32, 28)
        np.testing.assert_array_equal(pixels, shards.source[record]["image"][2:30, 2:30])
        assert size == tuple(shards.metadata.source_size[record])


def test_jpeg_and_dicom_encodings(inference, radiograph, tmp_path):
    png = _save_png(tmp_path / "x.png", radiograph)
    jpeg = str(tmp_path / "x.jpg")
    Image.fromarray(radiograph).save(jpeg, quality=95)
    window = {"WindowCenter": 2040.5, "WindowWidth": 4081}  # 12-bit stored u * 16 → exactly u on 0..255
    twelve_bit = radiograph.astype(np.int64) * 16
    dicoms = {
        "mono2_12bit_window": _save_dicom(tmp_path / "m2.dcm", twelve_bit, "MONOCHROME2", 12, **window),
        "mono1_12bit_window": _save_dicom(tmp_path / "m1.dcm", 4080 - twelve_bit, "MONOCHROME1", 12, **window),
        # stored (x + 1000) / 2 with slope 2, intercept -1000: the window only fits once the rescale is applied
        "rescaled": _save_dicom(tmp_path / "rescaled.dcm", (twelve_bit + 1000) // 2, "MONOCHROME2", 12,
                                RescaleSlope=2, RescaleIntercept=-1000, **window),
        "mono2_16bit_minmax": _save_dicom(tmp_path / "m16", radiograph.astype(np.int64) * 257, "MONOCHROME2", 16),
        "mono1_16bit_minmax": _save_dicom(tmp_path / "m1_16", 65535 - radiograph.astype(np.int64) * 257,
                                          "MONOCHROME1", 16),
    }
    for path in dicoms.values():  # every encoding decodes to the same pixels (extension-less files too)
        np.testing.assert_array_equal(images.read_image(path), radiograph)
    results, errors = predict.predict_files(inference, [png, jpeg, *dicoms.values()], batch_size=4)
    assert not errors
    by_path = _by_path(results)
    for path in dicoms.values():  # the same pixels in other rows of the batch
        assert_same_forward(by_path[path], by_path[png])
    assert np.abs(images.read_image(jpeg).astype(int) - radiograph).mean() < 2
    np.testing.assert_allclose(by_path[jpeg], by_path[png], atol=0.05)


def test_unreadable_files_are_reported_and_the_rest_predicted(inference, radiograph, tmp_path):
    good = [_save_png(tmp_path / f"good{i}.png", radiograph) for i in range(2)]
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    no_pixels = _save_dicom(tmp_path / "no_pixels.dcm", None, "MONOCHROME2", 12)
    paths = [good[0], str(text), str(empty), no_pixels, str(tmp_path / "missing.png"), good[1]]
    results, errors = predict.predict_files(inference, paths, batch_size=4)
    assert [r.path for r in results] == good
    assert [e.path for e in errors] == paths[1:5]
    for error, reason in zip(errors, ("not an image", "empty file", "without pixel data", "No such file")):
        assert error.message.startswith(error.path + ": ") and reason in error.message
        assert "\n" not in error.message
    with pytest.raises(images.UnreadableImage):
        images.read_pixels(no_pixels)


def test_batch_padding_does_not_change_predictions(inference, tmp_path):
    """Three files in one batch of 8 (five padded rows) and in batches of 2 (the last one padded): the padding and
    the neighbouring rows leak into no real row. The two batch shapes compile to different kernels, so the rows agree
    to float32 rounding (conftest.assert_same_forward), not bit for bit; a leak moves logits by their own size."""
    rng = np.random.default_rng(0)
    paths = [_save_png(tmp_path / f"{i}.png", rng.integers(0, 256, (40 + i, 50), dtype=np.uint8)) for i in range(3)]
    one_batch, _ = predict.predict_files(inference, paths, batch_size=8)
    padded, _ = predict.predict_files(inference, paths, batch_size=2)
    assert [r.path for r in one_batch] == [r.path for r in padded] == paths
    assert_same_forward([r.probabilities for r in padded], [r.probabilities for r in one_batch])


def test_thresholds_from_the_checkpoint_or_half(inference, radiograph, tmp_path):
    saved = inference.extra["thresholds"]["youden"]  # chosen on validation by training
    from_checkpoint = predict.decision_thresholds(inference)
    assert from_checkpoint.rule == "youden"
    assert all(t == (0.5 if saved[f] is None else saved[f]) for f, t in zip(FINDINGS, from_checkpoint.values))
    fallback = predict.decision_thresholds(dataclasses.replace(inference, extra={}))
    assert fallback.rule == "0.5" and (fallback.values == 0.5).all() and "no youden thresholds" in fallback.note
    path = _save_png(tmp_path / "x.png", radiograph)
    probabilities = predict.predict_files(inference, [path])[0][0].probabilities
    chosen = {f: float(p) + (0.01 if i % 2 else -0.01) for i, (f, p) in enumerate(zip(FINDINGS, probabilities))}
    saved = dataclasses.replace(inference, extra={"thresholds": {"youden": chosen, "f1": {}}})
    thresholds = predict.decision_thresholds(saved)
    assert thresholds.rule == "youden" and thresholds.note is None
    (result,), _ = predict.predict_files(saved, [path], thresholds=thresholds)
    assert result.positive == FINDINGS[0::2]
    partial = dict(chosen, Hernia=None)
    partial_thresholds = predict.decision_thresholds(
        dataclasses.replace(inference, extra={"thresholds": {"youden": partial}}))
    assert partial_thresholds.values[-1] == 0.5 and "Hernia" in partial_thresholds.note


def test_formatters(inference, radiograph, tmp_path):
    path = _save_png(tmp_path / "x.png", radiograph)
    (tmp_path / "bad.png").write_text("no")
    thresholds = predict.decision_thresholds(dataclasses.replace(inference, extra={}))
    results, errors = predict.predict_files(inference, [path, str(tmp_path / "bad.png")], thresholds=thresholds)
    table = predict.format_table(results, errors, thresholds)
    assert table.startswith("note: ") and path in table and "error: " + str(tmp_path / "bad.png") in table
    assert all(finding in table for finding in FINDINGS)
    parsed = json.loads(predict.format_json(results, errors, thresholds))
    assert list(parsed["predictions"][0]["probabilities"]) == list(FINDINGS)
    assert parsed["errors"][0]["file"] == str(tmp_path / "bad.png") and parsed["thresholds"]["rule"] == "0.5"


def test_cam_overlays_are_written_in_the_files_frame(inference, radiograph, tmp_path):
    path = _save_png(tmp_path / "chest.png", np.pad(radiograph, ((0, 0), (8, 8))))  # 80 wide, 64 high
    (tmp_path / "bad.dcm").write_bytes(b"")
    written, errors = explain.write_cam_overlays(inference, [path, str(tmp_path / "bad.dcm")], tmp_path / "cams",
                                                 findings=("Cardiomegaly", "Effusion"))
    assert [os.path.basename(p) for p in written] == ["chest_Cardiomegaly.png", "chest_Effusion.png"]
    assert len(errors) == 1
    with Image.open(written[0]) as picture:  # the file's 80 x 64 frame, shown at 512 pixels high, + title and bar
        assert picture.size == pictures.picture_size(64, 80)
    with pytest.raises(ValueError, match="unknown findings"):
        explain.write_cam_overlays(inference, [path], tmp_path / "cams", findings=("Cardiomegally",))


def test_localization_check_of_a_run(workdir, synthetic_release):
    metrics, rows = localize.localize_workdir(workdir, os.path.join(synthetic_release, "BBox_List_2017.csv"),
                                              split="test")
    test_names = set(open(os.path.join(synthetic_release, "test_list.txt")).read().split())
    expected = [b for b in nih.read_boxes(os.path.join(synthetic_release, "BBox_List_2017.csv"))
                if b.image_index in test_names]
    assert len(rows) == metrics["num_boxes"] == len(expected) > 0
    assert set(metrics["per_finding"]) <= set(synthetic.BOX_FINDINGS)
    json.dumps(metrics)
    for accuracy in (metrics["all"]["iou"], metrics["all"]["iobb"]):
        assert list(accuracy) == ["0.1", "0.25", "0.5"] and all(0 <= v <= 1 for v in accuracy.values())
    assert all(0 <= r.truth[0] and r.truth[0] + r.truth[2] <= 28 for r in rows)  # expert boxes in the 28² crop
    assert localize.format_localization(metrics).splitlines()[-1].split()[:2] == ["all", str(len(rows))]


def test_predict_command_json_cam_and_exit_code(workdir, radiograph, tmp_path, capsys):
    from cxrjax import cli

    good = _save_png(tmp_path / "good.png", radiograph)
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    cams = tmp_path / "cams"
    code = cli.main(["predict", str(good), str(bad), "--workdir", workdir, "--json", "--cam", str(cams)])
    assert code == 1  # one unreadable file
    printed = json.loads(capsys.readouterr().out)
    assert [p["file"] for p in printed["predictions"]] == [str(good)]
    assert [e["file"] for e in printed["errors"]] == [str(bad)]
    # A picture of each finding at or above its operating point, no more.
    positive = printed["predictions"][0]["positive"]
    assert sorted(p.name for p in cams.glob("good_*.png")) == sorted(f"good_{f}.png" for f in positive)


def test_predict_command_scales_a_twelve_bit_png_by_its_sbit(workdir, radiograph, tmp_path, capsys):
    """A 12-bit X-ray in a 16-bit PNG reaches the model as the 8-bit PNG of the same picture when its sBIT chunk says
    12 bits, although no pixel needs more than 11 (the maximum-value rule, which applies without the chunk, would
    double its brightness). Values are multiples of 17 on the 8-bit scale, 273 on the 12-bit one: 255/4095 = 17/273,
    so the two files hold exactly the same picture."""
    from cxrjax import cli

    steps = (radiograph // 36).astype(np.int64)  # 0..7: at most 119 of 255, 1,911 of 4,095 (below 2**11)
    eight_bit = _save_png(tmp_path / "eight.png", (steps * 17).astype(np.uint8))
    twelve_bit, no_sbit = str(tmp_path / "twelve.png"), str(tmp_path / "twelve_no_sbit.png")
    write_png(twelve_bit, (steps * 273).astype(np.uint16), significant_bits=12)
    write_png(no_sbit, (steps * 273).astype(np.uint16))
    np.testing.assert_array_equal(images.read_pixels(twelve_bit), images.read_pixels(eight_bit))
    assert cli.main(["predict", eight_bit, twelve_bit, no_sbit, "--workdir", workdir, "--json"]) == 0
    printed = {p["file"]: p for p in json.loads(capsys.readouterr().out)["predictions"]}

    def probabilities(path):
        return np.array([printed[path]["probabilities"][finding] for finding in FINDINGS])

    assert_same_forward(probabilities(twelve_bit), probabilities(eight_bit))
    assert np.abs(probabilities(no_sbit) - probabilities(eight_bit)).max() > 1e-3  # read as 11-bit: twice as bright


# --- a model that reads age, sex and view position besides the image (the "fusion" architecture) ----------------

@pytest.fixture(scope="module")
def fusion_workdir(prepared_shards, tmp_path_factory):
    """Two training steps of a ResNet-18 fusion model: enough for a checkpoint whose head weighs the metadata."""
    config = default.get_config()
    config.data.data_dir, config.data.size, config.data.crop = prepared_shards[0], 32, 28
    config.data.num_threads = 2
    config.model.architecture = "fusion"
    config.batch_size, config.eval_batch_size, config.num_epochs, config.steps_per_epoch = 16, 32, 1, 2
    workdir = str(tmp_path_factory.mktemp("fusion_run"))
    train.train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def fusion(fusion_workdir):
    return load_run(fusion_workdir)


def _fusion_forward(inference, image, age, sex, view):
    """The fusion model's probabilities for one (crop, crop, 1) image, straight from `model.apply`."""
    import jax

    from cxrjax.models.preprocess import normalize

    metadata = {"age": np.array([age], np.float32), "sex": np.array([sex], np.int32),
                "view": np.array([view], np.int32)}
    logits = inference.model.apply(inference.variables, normalize(image[None]), metadata=metadata, train=False)
    return np.asarray(jax.nn.sigmoid(logits["logits"]))[0]


def test_fusion_model_predicts_with_the_given_metadata(fusion, radiograph, tmp_path):
    assert fusion.architecture.reads_metadata and fusion.config.model.architecture == "fusion"
    paths = [_save_png(tmp_path / f"x{i}.png", np.roll(radiograph, 9 * i, axis=1)) for i in range(3)]
    given = predict.Metadata(age=61.0, sex="F", view="AP")
    results, errors = predict.predict_files(fusion, paths, batch_size=2, metadata=given)  # a padded last batch
    assert not errors and [r.path for r in results] == paths
    for path, result in zip(paths, results):
        image, _ = images.load_input(path, 32, 28)
        assert_same_forward(result.probabilities, _fusion_forward(fusion, image, 61.0, 1, 1))  # batch 2 vs 1
    other, _ = predict.predict_files(fusion, paths[:1], metadata=predict.Metadata(age=20.0, sex="M", view="PA"))
    assert np.abs(other[0].probabilities - results[0].probabilities).max() > 1e-4  # the metadata reaches the head
    # The Python API (`cxrjax.load`'s Predictor) gives the same for files and for the arrays they hold.
    api = Predictor(fusion, predict.decision_thresholds(fusion))
    for items in (paths, [images.read_image(path) for path in paths]):
        same = api.predict(items, metadata=given, batch_size=2)
        for mine, theirs in zip(same, results):
            np.testing.assert_array_equal(mine.probabilities, theirs.probabilities)
    with pytest.raises(predict.MissingMetadata, match=r"<array 0>: the fusion model \(resnet18\) reads age"):
        api.predict(images.read_image(paths[0]))


def test_fusion_model_reads_dicom_tags_and_flags_override_them(fusion, radiograph, tmp_path):
    dicom = _save_dicom(tmp_path / "x.dcm", radiograph.astype(np.int64) * 257, "MONOCHROME2", 16,
                        PatientAge="045Y", PatientSex="M", ViewPosition="AP")
    png = _save_png(tmp_path / "x.png", radiograph)
    (from_tags,), _ = predict.predict_files(fusion, [dicom])
    (same,), _ = predict.predict_files(fusion, [png], metadata=predict.Metadata(45.0, "M", "AP"))
    np.testing.assert_array_equal(from_tags.probabilities, same.probabilities)  # the same pixels, batch, program
    (overridden,), _ = predict.predict_files(fusion, [dicom], metadata=predict.Metadata(age=80.0, view="PA"))
    (expected,), _ = predict.predict_files(fusion, [png], metadata=predict.Metadata(80.0, "M", "PA"))
    np.testing.assert_array_equal(overridden.probabilities, expected.probabilities)
    assert predict.dicom_metadata(dicom) == predict.Metadata(45.0, "M", "AP")
    assert predict.dicom_metadata(png) == predict.Metadata()
    months = _save_dicom(tmp_path / "m.dcm", radiograph.astype(np.int64), "MONOCHROME2", 8, PatientAge="006M",
                         PatientSex="O", ViewPosition="LL")
    assert predict.dicom_metadata(months) == predict.Metadata(age=0.5)  # sex O and a lateral view: not known


def test_fusion_model_without_metadata_fails_with_one_line(fusion, radiograph, tmp_path):
    png = _save_png(tmp_path / "x.png", radiograph)
    with pytest.raises(predict.MissingMetadata) as raised:
        predict.predict_files(fusion, [png])
    message = str(raised.value)
    assert "\n" not in message and message.startswith(png + ": the fusion model (resnet18) reads age, sex and view")
    assert "--age YEARS --sex M|F --view PA|AP" in message
    no_view = _save_dicom(tmp_path / "v.dcm", radiograph.astype(np.int64), "MONOCHROME2", 8, PatientAge="030Y",
                          PatientSex="F")
    with pytest.raises(predict.MissingMetadata, match=r"gives no view: pass --view PA\|AP \(DICOM files may carry "
                                                      r"ViewPosition\)"):
        predict.predict_files(fusion, [no_view], metadata=predict.Metadata(age=30.0))
    with pytest.raises(predict.MissingMetadata):
        explain.write_cam_overlays(fusion, [png], tmp_path / "cams")
    with pytest.raises(ValueError, match="choose one of M, F"):
        predict.Metadata(sex="female")


def test_plain_classifier_ignores_metadata(inference, radiograph, tmp_path):
    png = _save_png(tmp_path / "x.png", radiograph)
    assert not inference.architecture.reads_metadata
    (plain,), _ = predict.predict_files(inference, [png])
    (given,), _ = predict.predict_files(inference, [png], metadata=predict.Metadata(50.0, "M", "PA"))
    np.testing.assert_array_equal(plain.probabilities, given.probabilities)


def test_fusion_gradcam_passes_the_metadata(fusion, radiograph, tmp_path):
    png = _save_png(tmp_path / "chest.png", radiograph)
    given = predict.Metadata(age=61.0, sex="F", view="AP")
    written, errors = explain.write_cam_overlays(fusion, [png], tmp_path / "cams", findings=("Effusion",),
                                                 metadata=given)
    assert [os.path.basename(p) for p in written] == ["chest_Effusion.png"] and not errors
    image, _ = images.load_input(png, 32, 28)
    metadata = {"age": np.array([61.0], np.float32), "sex": np.array([1], np.int32), "view": np.array([1], np.int32)}
    out = explain.gradcam_step(fusion)(fusion.variables, image[None], metadata)
    assert_same_forward(out["probabilities"][0], _fusion_forward(fusion, image, 61.0, 1, 1))  # gradient program
    assert out["cam"].shape == (1, 14, 28, 28) and np.isfinite(out["cam"]).all()


def test_predict_command_metadata_flags(fusion_workdir, radiograph, tmp_path, capsys):
    from cxrjax import cli

    png = _save_png(tmp_path / "x.png", radiograph)
    assert cli.main(["predict", png, "--workdir", fusion_workdir]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith("cxrjax predict: error: " + png + ": the fusion model") and "--age" in captured.err
    cams = tmp_path / "cams"
    code = cli.main(["predict", png, "--workdir", fusion_workdir, "--age", "61", "--sex", "F", "--view", "AP",
                     "--json", "--cam", str(cams)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    (expected,), _ = predict.predict_files(load_run(fusion_workdir), [png],
                                           metadata=predict.Metadata(61.0, "F", "AP"))
    np.testing.assert_array_equal(np.array(list(printed["predictions"][0]["probabilities"].values()), np.float32),
                                  expected.probabilities)  # the same batch through the same program
    positive = printed["predictions"][0]["positive"]
    assert sorted(p.name for p in cams.glob("x_*.png")) == sorted(f"x_{f}.png" for f in positive)


def test_localization_check_of_a_fusion_run_uses_each_records_metadata(fusion_workdir, fusion, synthetic_release,
                                                                        monkeypatch):
    """`cxrjax localize` on a fusion model: Grad-CAM gets each shard record's own age, sex and view."""
    seen = []
    make_step = localize.gradcam_step

    def recording_step(inference):
        step = make_step(inference)

        def run(variables, batch, metadata=None):
            seen.append(metadata)
            return step(variables, batch, metadata)
        return run

    monkeypatch.setattr(localize, "gradcam_step", recording_step)
    metrics, rows = localize.localize_workdir(fusion_workdir, os.path.join(synthetic_release, "BBox_List_2017.csv"),
                                              split="test", batch_size=4)
    assert rows and metrics["num_boxes"] == len(rows) and seen and all(m is not None for m in seen)
    data = fusion.config.data
    manifest = shard_format.open_shards(builder_dir(data.data_dir, data.size)).metadata
    images_in_order = list(dict.fromkeys(row.image_index for row in rows))  # the order Grad-CAM saw them in
    records = [list(manifest.image_index).index(name) for name in images_in_order[:4]]
    for field in ("age", "sex", "view"):
        np.testing.assert_array_equal(seen[0][field][:len(records)], getattr(manifest, field)[records])
