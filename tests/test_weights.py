"""The strict importer: every variant's key mapping, the errors it raises, old key spellings, a fresh head for another
number of classes, grayscale inputs end to end, and the file formats."""

from __future__ import annotations

import logging
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import torchvision_model
from cxrjax.models import BACKBONES, create_model, weights
from cxrjax.models.preprocess import normalize

TIMM_NAMES = {
    "swin_tiny": "swin_tiny_patch4_window7_224",
    "swin_small": "swin_small_patch4_window7_224",
    "swin_base": "swin_base_patch4_window7_224",
    "swin_base_384": "swin_base_patch4_window12_384",
}


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def reference(torch, name: str, device: str = "cpu"):
    """The torchvision / timm model of `name` (seeded random weights; on the meta device: shapes only)."""
    torch.manual_seed(0)
    with torch.device(device):
        if name in TIMM_NAMES:
            return pytest.importorskip("timm").create_model(TIMM_NAMES[name]).eval()
        return torchvision_model(name).eval()


def numpy_state(model) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_variant_imports_its_reference_state_dict_strictly(torch, name):
    """Key names and shapes only (meta-device reference, zero-copy zeros): every key maps, every variable fills."""
    state = {key: np.broadcast_to(np.float32(0), tuple(value.shape))
             for key, value in reference(torch, name, device="meta").state_dict().items()}
    variables = weights.from_torch(name, state, num_classes=1000)

    size = 384 if name == "swin_base_384" else 224
    expected = jax.eval_shape(create_model(name, 1000).init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    assert jax.tree.structure(variables) == jax.tree.structure(expected)
    assert jax.tree.leaves(jax.tree.map(lambda v, e: v.shape == e.shape, variables, expected)) == [True] * len(
        jax.tree.leaves(expected))


def test_unknown_and_missing_keys_are_rejected_with_their_names(torch):
    state = numpy_state(reference(torch, "resnet18"))
    state["layer1.0.convX.weight"] = state.pop("layer1.0.conv1.weight")
    with pytest.raises(weights.IncompatibleCheckpointError) as error:
        weights.from_torch("resnet18", state, num_classes=1000)
    assert error.value.missing == ["layer1.0.conv1.weight (for params/backbone/layer1_0/conv1/kernel (3, 3, 64, 64))"]
    assert error.value.unexpected == ["layer1.0.convX.weight"]
    assert "missing (1)" in str(error.value) and "unexpected (1)" in str(error.value)


def test_wrong_shapes_are_rejected_with_both_shapes(torch):
    state = numpy_state(reference(torch, "resnet18"))
    state["layer2.0.bn1.running_var"] = np.ones(3, np.float32)
    state["conv1.weight"] = state["conv1.weight"][:, :1]  # a 1-channel stem is not the 3-channel model
    with pytest.raises(weights.IncompatibleCheckpointError, match=r"wrong shape \(2\)") as error:
        weights.from_torch("resnet18", state, num_classes=1000)
    assert error.value.wrong_shape == [
        "conv1.weight: checkpoint (64, 1, 7, 7) → (7, 7, 1, 64), model expects (7, 7, 3, 64)",
        "layer2.0.bn1.running_var: checkpoint (3,) → (3,), model expects (128,)",
    ]


def test_only_documented_keys_are_skipped_and_they_are_logged(torch, caplog):
    state = numpy_state(reference(torch, "resnet18"))
    with caplog.at_level(logging.INFO, logger="cxrjax.models.weights"):
        weights.from_torch("resnet18", state, num_classes=1000)
    assert "deliberately not imported (20 keys" in caplog.text and "bn1.num_batches_tracked" in caplog.text
    state["layer4.1.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(weights.IncompatibleCheckpointError, match="layer4.1.extra.weight"):
        weights.from_torch("resnet18", state, num_classes=1000)


def test_imported_values_are_transposed_torch_tensors(torch):
    state = numpy_state(reference(torch, "resnet18"))
    variables = weights.from_torch("resnet18", state, num_classes=1000)
    block = variables["params"]["backbone"]["layer2_0"]
    np.testing.assert_array_equal(block["downsample_conv"]["kernel"],
                                  state["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(block["downsample_bn"]["scale"], state["layer2.0.downsample.1.weight"])
    np.testing.assert_array_equal(variables["batch_stats"]["backbone"]["layer2_0"]["bn1"]["var"],
                                  state["layer2.0.bn1.running_var"])
    np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], state["fc.weight"].T)


def test_old_densenet_key_spelling_is_renamed(torch):
    state = numpy_state(reference(torch, "densenet121"))
    old = {key.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): value for key, value in state.items()}
    assert "features.denseblock1.denselayer1.norm.1.running_mean" in old
    assert_trees_equal(weights.from_torch("densenet121", old, 1000), weights.from_torch("densenet121", state, 1000))


def test_original_swin_layout_is_renamed_and_its_buffers_skipped(torch):
    """Microsoft's release / timm < 0.9: patch merging at the end of stages 0..2, `head`, persistent buffers."""
    model = reference(torch, "swin_tiny")
    state = numpy_state(model)
    old = {}
    for key, value in state.items():
        for stage in (1, 2, 3):
            key = key.replace(f"layers.{stage}.downsample", f"layers.{stage - 1}.downsample")
        old[key.replace("head.fc.", "head.")] = value
    for i, block in enumerate(model.layers[1].blocks):
        old[f"layers.1.blocks.{i}.attn.relative_position_index"] = block.attn.relative_position_index.numpy()
        if block.attn_mask is not None:
            old[f"layers.1.blocks.{i}.attn_mask"] = block.attn_mask.numpy()
    assert "layers.0.downsample.reduction.weight" in old and "head.weight" in old
    assert_trees_equal(weights.from_torch("swin_tiny", old, 1000), weights.from_torch("swin_tiny", state, 1000))


def test_other_number_of_classes_keeps_the_backbone_and_starts_the_head_fresh(torch, caplog):
    state = numpy_state(reference(torch, "densenet121"))
    imagenet = weights.from_torch("densenet121", state, num_classes=1000)
    with caplog.at_level(logging.WARNING, logger="cxrjax.models.weights"):
        chest = weights.from_torch("densenet121", state, num_classes=14, rng=jax.random.key(7))
    assert ("head 'fc' (14 classes) initialised fresh because the checkpoint's classifier has 1000 outputs"
            in caplog.text)

    assert_trees_equal(chest["params"]["backbone"], imagenet["params"]["backbone"])
    assert_trees_equal(chest["batch_stats"], imagenet["batch_stats"])
    flax_default = nn.Dense(14).init(jax.random.key(7), jnp.zeros((1, 1024)))["params"]
    assert_trees_equal(chest["params"]["fc"], jax.tree.map(np.asarray, flax_default))
    assert chest["params"]["fc"]["kernel"].shape == (1024, 14) and not np.any(chest["params"]["fc"]["bias"])


def test_grayscale_xray_through_normalize_matches_torch_on_replicated_channels(torch):
    """Our path: uint8 (N, H, W, 1) → preprocess.normalize → model. torchvision's: the gray image as 3 equal
    channels, ToTensor-style /255, Normalize(ImageNet mean, std) → model."""
    torchvision = pytest.importorskip("torchvision")
    model = reference(torch, "resnet18")
    gray = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 1), dtype=np.uint8)

    rgb = torch.from_numpy(gray).permute(0, 3, 1, 2).float().div(255).expand(-1, 3, -1, -1)
    imagenet = torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = model(imagenet(rgb)).numpy()
    variables = weights.from_torch("resnet18", numpy_state(model), num_classes=1000)
    logits = jax.jit(create_model("resnet18", 1000).apply)(variables, normalize(jnp.asarray(gray)))["logits"]

    error = float(np.max(np.abs(np.asarray(logits) - expected)))
    print(f"grayscale resnet18: max |logit error| {error:.2e} (max |logit| {np.max(np.abs(expected)):.2f})")
    assert error < 1e-4  # logits of a few units here (max ~8)


def small_state_dict() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"conv1.weight": rng.normal(size=(4, 3, 7, 7)).astype(np.float32),
            "bn1.num_batches_tracked": np.array(3, np.int64)}


def test_safetensors_and_npz_load_without_torch(tmp_path, monkeypatch):
    state = small_state_dict()
    np.savez(tmp_path / "w.npz", **state)
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    safetensors_numpy.save_file(state, str(tmp_path / "w.safetensors"))
    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now fails
    for name in ("w.npz", "w.safetensors"):
        loaded = weights.load_state_dict(tmp_path / name)
        assert_trees_equal(loaded, state)


def test_torch_pickles_load_unwrapped_and_say_when_torch_is_missing(torch, tmp_path, monkeypatch):
    state = small_state_dict()
    torch.save({"state_dict": {key: torch.from_numpy(value) for key, value in state.items()}, "epoch": 3},
               tmp_path / "w.pth")
    torch.save({"model": {"x": torch.ones(2, dtype=torch.bfloat16)}}, tmp_path / "half.pt")
    assert_trees_equal(weights.load_state_dict(tmp_path / "w.pth"), state)
    half = weights.load_state_dict(tmp_path / "half.pt")
    assert half["x"].dtype == np.float32 and half["x"].tolist() == [1.0, 1.0]

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"PyTorch pickle: reading it needs torch"):
        weights.load_state_dict(tmp_path / "w.pth")
    with pytest.raises(ValueError, match="unknown checkpoint format '.ckpt'"):
        weights.load_state_dict(tmp_path / "w.ckpt")


def test_cli_import_of_a_torch_pickle_without_torch_is_one_line_and_nonzero(tmp_path, monkeypatch, capsys):
    from cxrjax import cli

    source = tmp_path / "resnet18.pth"
    source.write_bytes(b"not read: the torch import fails first")
    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now fails
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))  # leave JAX's cache setting alone
    status = cli.main(["import-weights", str(source), "--model", "resnet18", "--out", str(tmp_path / "out.msgpack")])
    captured = capsys.readouterr()
    assert status != 0 and not (tmp_path / "out.msgpack").exists()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith(f"cxrjax import-weights: error: {source} is a PyTorch pickle: reading it needs "
                                   "torch")


def test_converted_variables_round_trip_through_a_file(tmp_path):
    model = create_model("resnet18", 14)
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    variables = jax.tree.map(lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype), shapes)
    weights.save_variables(tmp_path / "resnet18.msgpack", variables)
    restored = weights.load_variables(tmp_path / "resnet18.msgpack")
    assert_trees_equal(restored, jax.tree.map(np.asarray, variables))
    x = jax.random.normal(jax.random.key(1), (1, 32, 32, 3))
    apply = jax.jit(model.apply)
    np.testing.assert_array_equal(apply(restored, x)["logits"], apply(variables, x)["logits"])
