"""Grad-CAM and the localisation check: the maths on a plain classifier, the geometry between frames, and — on a
ResNet-18 that has learned the synthetic Cardiomegaly — maps that peak where the finding was drawn and boxes that
find the drawn ones.

The model is trained in memory for one short epoch on synthetic images at 72² (a 3x3 final feature map; the demo's
40² crop gives 2x2, too coarse to say where a map peaks), half of them with Cardiomegaly, the other findings drawn at
the release's rates as distractors.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import assert_same_forward
from cxrjax import losses
from cxrjax.configs import default
from cxrjax.data import images, nih, shard_format
from cxrjax.data.decode import resize_area
from cxrjax.data.findings import FINDINGS, NUM_FINDINGS
from cxrjax.evaluation.load import TrainedRun
from cxrjax.inference import localize
from cxrjax.inference.explain import make_gradcam_step
from cxrjax.inference.pictures import overlay
from cxrjax.models import create_model
from cxrjax.models.preprocess import normalize
from cxrjax.runtime import sharding
from cxrjax.training import train
from cxrjax.training.state import create_train_state
from data_pipelines import synthetic

SIZE = 72
CARDIOMEGALY = FINDINGS.index("Cardiomegaly")


def _draw(count: int, seed: int, size: int = SIZE, cardiomegaly: float = 0.5):
    """Synthetic radiographs, Cardiomegaly present with probability `cardiomegaly`; images, labels, drawn boxes."""
    rng = np.random.default_rng(seed)
    pictures, labels, boxes = [], [], []
    for _ in range(count):
        label = synthetic.sample_labels(rng)
        label[CARDIOMEGALY] = rng.random() < cardiomegaly
        picture, drawn = synthetic.draw_image(label, size, rng)
        pictures.append(picture)
        labels.append(label)
        boxes.append(drawn)
    return np.stack(pictures), np.stack(labels), boxes


@pytest.fixture(scope="module")
def trained():
    """A `TrainedRun` for ResNet-18 after one epoch over 320 images (10 steps of 32)."""
    pictures, labels, _ = _draw(320, seed=0)
    model = create_model("resnet18", NUM_FINDINGS)
    mesh = sharding.data_mesh(jax.devices()[:1])
    state = create_train_state(model, optax.adam(1e-3), (SIZE, SIZE, 3), jax.random.key(0), mesh)
    step = jax.jit(functools.partial(train.train_step, objective=losses.build_objective({"logits": ("bce", 1.0)}),
                                     dtype=jnp.float32, dropout_key=jax.random.key(1)), donate_argnums=0)
    order = np.random.default_rng(1).permutation(len(pictures))
    unused_metadata = {name: np.zeros(32, np.float32) for name in shard_format.METADATA_FIELDS}  # a plain classifier
    for batch in order.reshape(-1, 32):
        state, _ = step(state, {"image": pictures[batch, :, :, None], "labels": labels[batch], **unused_metadata})
    config = default.get_config()
    config.data.size = config.data.crop = SIZE
    return TrainedRun(config, model, {"params": state.params, "batch_stats": state.batch_stats}, jnp.float32, 0, {})


@pytest.fixture(scope="module")
def gradcam(trained):
    return make_gradcam_step(trained.model, trained.dtype)


def test_gradcam_of_a_gap_classifier_is_its_class_activation_map(trained, gradcam):
    """For GAP + dense, dy_k/dA = w_k / (h w) everywhere, so Grad-CAM = ReLU(Σ_c w_kc A_c) / (h w), upsampled."""
    pictures, _, _ = _draw(3, seed=5)
    out = gradcam(trained.variables, pictures[..., None])
    assert out["cam"].shape == (3, NUM_FINDINGS, SIZE, SIZE) and out["cam"].dtype == jnp.float32
    x = normalize(pictures[..., None])
    outputs, captured = jax.jit(lambda v, x: trained.model.apply(
        v, x, train=False, capture_intermediates=lambda module, _: module.path == ("backbone",),
        mutable=["intermediates"]))(trained.variables, x)
    features = captured["intermediates"]["backbone"]["__call__"][0]
    kernel = trained.variables["params"]["fc"]["kernel"]
    cam = jax.nn.relu(jnp.einsum("nhwc,ck->nkhw", features, kernel)) / (features.shape[1] * features.shape[2])
    expected = jax.image.resize(cam, (3, NUM_FINDINGS, SIZE, SIZE), "linear")
    np.testing.assert_allclose(out["cam"], expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    assert_same_forward(out["probabilities"], jax.nn.sigmoid(outputs["logits"]))  # the gradient program's forward


def test_cam_peaks_where_cardiomegaly_was_drawn(gradcam, trained):
    pictures, _, boxes = _draw(12, seed=7, cardiomegaly=1.0)
    out = jax.device_get(gradcam(trained.variables, pictures[..., None]))
    assert (out["probabilities"][:, CARDIOMEGALY] > 0.5).mean() >= 0.9  # the finding is learned
    inside = []
    for cam, drawn in zip(out["cam"][:, CARDIOMEGALY], boxes):
        row, col = np.unravel_index(np.argmax(cam), cam.shape)
        x, y, w, h = drawn["Cardiomegaly"]
        inside.append(x <= col < x + w and y <= row < y + h)
    assert np.mean(inside) >= 0.75, inside


def test_unknown_layer_is_refused(trained):
    step = make_gradcam_step(trained.model, trained.dtype, layer=("encoder",))
    with pytest.raises(ValueError, match="no submodule at 'encoder'"):
        step(trained.variables, np.zeros((1, SIZE, SIZE, 1), np.uint8))


def _fake_shards(pictures, source_size, names):
    """`shard_format.Shards` over in-memory records (what `localize_shards` reads: image, image_index, source_size;
    not the serialized records)."""
    count = len(pictures)
    metadata = shard_format.Metadata(
        image_index=np.array(names), patient_id=np.arange(count), is_test=np.ones(count, bool),
        labels=np.zeros((count, NUM_FINDINGS), np.uint8), age=np.zeros(count, np.float32),
        sex=np.zeros(count, np.int32), view=np.zeros(count, np.int32),
        source_size=np.tile(source_size, (count, 1)))
    return shard_format.Shards(source=[{"image": p[..., None]} for p in pictures], serialized=None, metadata=metadata,
                            size=pictures.shape[1])


def test_localisation_finds_the_drawn_boxes(trained):
    """Images drawn at 96² (the boxes' frame), prepared at 72² like `prepare` would, Wang et al.'s protocol."""
    drawn, _, drawn_boxes = _draw(16, seed=11, size=96, cardiomegaly=1.0)
    prepared = np.stack([resize_area(p.astype(np.float32), SIZE) for p in drawn])
    names = [f"{i:08d}_000.png" for i in range(len(drawn))]
    boxes = [nih.Box(name, "Cardiomegaly", *b["Cardiomegaly"]) for name, b in zip(names, drawn_boxes)]
    rows = localize.localize_shards(trained, _fake_shards(prepared, (96, 96), names), np.arange(8, 16), boxes,
                                    batch_size=4)
    assert [r.image_index for r in rows] == names[8:]  # only the evaluated split's records
    np.testing.assert_allclose(rows[0].truth, np.array(drawn_boxes[8]["Cardiomegaly"]) * 0.75)
    metrics = localize.localization_metrics(rows)
    cardiomegaly = metrics["per_finding"]["Cardiomegaly"]
    assert cardiomegaly["num_boxes"] == 8 and list(metrics["per_finding"]) == ["Cardiomegaly"]
    assert cardiomegaly["iou"]["0.25"] >= 0.75 and cardiomegaly["iobb"]["0.25"] >= 0.75, cardiomegaly


def test_predicted_box_is_the_largest_hot_region():
    heat = np.zeros((10, 12), np.float32)
    heat[1:3, 1:3] = 1.0  # the peak, small
    heat[5:9, 4:10] = 0.6  # larger, above half the peak
    heat[6, 6] = 0.4
    assert localize.predicted_box(heat, 0.5) == (4.0, 5.0, 6.0, 4.0)
    assert localize.predicted_box(heat, 0.7) == (1.0, 1.0, 2.0, 2.0)
    assert localize.predicted_box(heat + 3.0, 0.5) == (4.0, 5.0, 6.0, 4.0)  # an offset shared by the map is no signal
    assert localize.predicted_box(np.full((4, 4), 2.0), 0.5) == localize.EMPTY_BOX


def test_iou_iobb_and_accuracy_counts():
    truth, predicted = (0, 0, 10, 10), (5, 0, 10, 5)  # intersection 25, predicted 50, union 125
    assert localize.iou(predicted, truth) == pytest.approx(0.2)
    assert localize.iobb(predicted, truth) == pytest.approx(0.5)
    assert localize.iobb(localize.EMPTY_BOX, truth) == 0.0
    rows = localize.localize([predicted, truth, localize.EMPTY_BOX], [truth] * 3, ["a", "b", "c"],
                             ["Mass", "Mass", "Nodule"])
    metrics = localize.localization_metrics(rows)
    assert metrics["num_boxes"] == 3 and metrics["num_images"] == 3
    assert metrics["per_finding"]["Mass"]["iobb"] == {"0.1": 1.0, "0.25": 1.0, "0.5": 0.5}  # IoBB 0.5 is not > 0.5
    assert metrics["per_finding"]["Mass"]["iou"] == {"0.1": 1.0, "0.25": 0.5, "0.5": 0.5}
    assert metrics["all"]["iou"]["0.1"] == pytest.approx(2 / 3)
    table = localize.format_localization(metrics).splitlines()
    assert table[0].split() == ["finding", "boxes", "IoU>0.1", "IoU>0.25", "IoU>0.5", "IoBB>0.1", "IoBB>0.25",
                                "IoBB>0.5"]
    assert table[1].split() == ["Mass", "2", "1.000", "0.500", "0.500", "1.000", "1.000", "0.500"]
    assert table[-1].split()[:3] == ["all", "3", "0.667"]


def test_frames_of_the_resize_and_centre_crop():
    # 1024 x 800 original → 256² → centre 224² (offset 16): x scales by 1/4, y by 0.32
    assert images.box_to_input((400, 500, 100, 50), (1024, 800), 256, 224) == pytest.approx((84, 144, 25, 16))
    assert images.box_to_input((0, 0, 40, 40), (1024, 1024), 256, 224) == (0.0, 0.0, 0.0, 0.0)  # outside the crop
    heat = np.ones((224, 224), np.float32)
    back = images.map_to_source(heat, (512, 400), 256)
    assert back.shape == (400, 512) and back[200, 256] == 1.0 and back[0, 0] == 0.0 and back[200, 10] == 0.0
    spot = np.zeros((224, 224), np.float32)
    spot[10, 100] = 1.0  # row 26, column 116 of the 256² frame → row 26 x 400/256, column 116 x 2 of the file
    row, col = np.unravel_index(np.argmax(images.map_to_source(spot, (512, 400), 256)), (400, 512))
    assert abs(row - 26 * 400 / 256) <= 2 and abs(col - 232) <= 2


def test_overlay_blends_by_heat():
    gray = np.full((4, 4), 100, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 2.0
    out = overlay(gray, heat)
    assert out.shape == (4, 4, 3) and (out[1:, 1:] == 100).all() and not (out[0, 0] == 100).all()
    assert (overlay(gray, np.zeros((4, 4))) == 100).all()


@pytest.mark.parametrize("architecture, head", [("bilinear", "fce"), ("fmsml", "fce"), ("can", "logits")])
def test_gradcam_of_every_architecture(architecture, head):
    """Grad-CAM runs on every architecture, its probabilities those of the evaluation step; the two-backbone models'
    map is the sum of their two streams' maps (checked on F-MSML)."""
    from cxrjax.evaluation.forward import make_predict_step
    from cxrjax.inference.explain import default_layers
    from cxrjax.models import init_variables

    model = create_model("resnet18", NUM_FINDINGS, architecture=architecture)
    variables = init_variables(model, jax.random.key(2), jnp.zeros((1, 64, 64, 3)))
    pictures = np.random.default_rng(4).integers(0, 256, (2, 64, 64, 1), dtype=np.uint8)
    out = make_gradcam_step(model, jnp.float32, head)(variables, pictures)
    assert out["cam"].shape == (2, NUM_FINDINGS, 64, 64) and np.isfinite(out["cam"]).all()
    assert float(out["cam"].max()) > 0
    assert_same_forward(out["probabilities"], make_predict_step(model, jnp.float32, head)(variables, pictures))
    layers = default_layers(model)
    assert len(layers) == (1 if architecture == "bilinear" else 2)
    if architecture == "fmsml":
        alone = [make_gradcam_step(model, jnp.float32, head, layer)(variables, pictures)["cam"] for layer in layers]
        np.testing.assert_allclose(out["cam"], alone[0] + alone[1], rtol=1e-4, atol=1e-6 * float(out["cam"].max()))
