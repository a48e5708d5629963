"""Strict import of torchvision (ResNet, DenseNet, VGG) and timm (Swin) ImageNet checkpoints into cxrjax models.

Why strict: a silently dropped or misnamed tensor leaves a layer at its random initialisation, and the model still
trains, just worse. So `from_torch` fills every variable of the target model from exactly one source tensor, checks
every shape, and raises `IncompatibleCheckpointError` listing every missing, unexpected and wrong-shape key. The only
source keys not used are in the explicit, documented `Layout.skip` lists (and the classifier when the number of
classes differs), and they are logged.

Our modules are named after the torch keys, so the mapping is a renaming: the Flax path `backbone/layer1_0/conv1/kernel`
is torch's `layer1.0.conv1.weight` (`_N` → `.N`, plus each family's prefix and a few renames), and our head `fc` is
torchvision ResNet's `fc`, DenseNet's `classifier` and timm Swin's `head.fc`. Tensors change layout on the way:
conv kernels OIHW → HWIO, linear weights (out, in) → (in, out).

Typical use (ImageNet weights for a 14-finding classifier; the head starts fresh):

    variables = from_torch("densenet121", load_state_dict("densenet121-a639ec97.pth"), num_classes=14)
    save_variables("densenet121_imagenet.msgpack", variables)
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from cxrjax.data import atomic
from cxrjax.data.progress import progress
from cxrjax.models import create_model

logger = logging.getLogger(__name__)

StateDict = Mapping[str, Any]  # torch-style name → array (numpy, or anything np.asarray accepts)


class IncompatibleCheckpointError(ValueError):
    """The checkpoint does not fill the model exactly; the message lists every offending key."""

    def __init__(self, model_name: str, missing: list[str], unexpected: list[str], wrong_shape: list[str]):
        self.missing, self.unexpected, self.wrong_shape = missing, unexpected, wrong_shape
        sections = [f"checkpoint does not match {model_name!r}:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                shown = "\n    ".join(keys[:25]) + (f"\n    ... and {len(keys) - 25} more" if len(keys) > 25 else "")
                sections.append(f"  {title} ({len(keys)}):\n    {shown}")
        super().__init__("\n".join(sections))


def _rename_old_densenet_keys(state_dict: StateDict) -> dict[str, Any]:
    """Old torchvision DenseNet checkpoints (the ImageNet URLs) say `denselayer1.norm.1`; the modules are now `norm1`.
    Same regex as torchvision's `densenet._load_state_dict`."""
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    return {pattern.sub(r"\1\2", key): value for key, value in state_dict.items()}


def _rename_original_swin_keys(state_dict: StateDict) -> dict[str, Any]:
    """Microsoft's Swin release and timm < 0.9 merge patches at the END of stages 0..2 and call the classifier `head`;
    timm >= 0.9 (and our layout) merge at the START of stages 1..3 and say `head.fc`. Same test and renaming as timm's
    `swin_transformer.checkpoint_filter_fn`."""
    if "layers.0.downsample.reduction.weight" not in state_dict:
        return dict(state_dict)
    renamed = {}
    for key, value in state_dict.items():
        key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key)
        renamed[re.sub(r"^head\.", "head.fc.", key)] = value
    return renamed


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one family's torch state dict names what our modules hold."""

    backbone_prefix: str  # torch prefix of every backbone key
    head: str | None  # torch module that is our head `fc`; None: the checkpoint has no usable head
    skip: tuple[str, ...]  # regexes of source keys deliberately not imported
    renames: tuple[tuple[str, str], ...] = ()  # Flax module names → torch's, where `_N` → `.N` is not enough
    normalize_keys: Callable[[StateDict], dict[str, Any]] = dict  # older key spellings → current torch names
    example_size: Callable[[nn.Module], int] = lambda backbone: 224  # an input side the backbone admits


BN_BUFFERS = r"\.num_batches_tracked$"  # torch's BatchNorm step counter; unused when momentum is set

LAYOUTS = {
    "resnet": Layout(backbone_prefix="", head="fc", skip=(BN_BUFFERS,),
                     renames=(("downsample_conv", "downsample.0"), ("downsample_bn", "downsample.1"))),
    "densenet": Layout(backbone_prefix="features.", head="classifier", skip=(BN_BUFFERS,),
                       normalize_keys=_rename_old_densenet_keys),
    # VGG's classifier (25088-4096-4096-N MLP after 7x7 pooling) is replaced by our GAP + fc head.
    "vgg": Layout(backbone_prefix="", head=None, skip=(BN_BUFFERS, r"^classifier\.")),
    # The relative-position index and the shifted-window mask are recomputed from shapes (models/swin.py).
    "swin": Layout(backbone_prefix="", head="head.fc", skip=(r"\.relative_position_index$", r"\.attn_mask$"),
                   normalize_keys=_rename_original_swin_keys, example_size=lambda backbone: 32 * backbone.window),
}

_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def layout_for(model_name: str) -> Layout:
    """The torch layout of a registered model name (by family prefix: resnet50 → resnet)."""
    for family, layout in LAYOUTS.items():
        if model_name.startswith(family):
            return layout
    raise ValueError(f"no torch layout for model {model_name!r}; families: {', '.join(LAYOUTS)}")


def torch_key(layout: Layout, path: tuple[str, ...]) -> str:
    """The torch state-dict key of a Flax variable path (collection excluded), e.g.
    ('backbone', 'layer1_0', 'downsample_conv', 'kernel') → 'layer1.0.downsample.0.weight'."""
    *modules, leaf = path
    if modules == ["fc"]:
        module = layout.head
    else:
        module = layout.backbone_prefix + re.sub(r"_(\d+)(?=\.|$)", r".\1", ".".join(modules[1:]))
        for flax_name, torch_name in layout.renames:
            module = module.replace(flax_name, torch_name)
    return f"{module}.{_LEAF_TO_TORCH.get(leaf, leaf)}"


def _to_flax_layout(leaf: str, array: np.ndarray) -> np.ndarray:
    """Conv kernels OIHW → HWIO, linear weights (out, in) → (in, out); everything else as is."""
    if leaf == "kernel":
        return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T
    return array


def from_torch(model_name: str, state_dict: StateDict, num_classes: int = 14, *, in_channels: int = 3,
               rng: jax.Array | int = 0) -> dict[str, dict]:
    """Flax variables ({'params', 'batch_stats'} for CNNs, {'params'} for Swin) of `create_model(model_name,
    num_classes)` from a torchvision/timm state dict, as host numpy float32 arrays.

    `in_channels`: the input channels of the checkpoint's first convolution (3 for ImageNet; 1 for torchxrayvision's
    grayscale models, `models.xrv`).

    The head `fc` is imported when the checkpoint's classifier has `num_classes` outputs. Otherwise (ImageNet's
    1000 classes into a 14-finding model, a headless checkpoint, or VGG whose classifier is not our head) the
    backbone is imported and `fc` starts fresh with Flax's default initialisation from `rng`, and a warning says so.
    Raises `IncompatibleCheckpointError` unless every other key maps one-to-one with matching shapes.
    """
    layout = layout_for(model_name)
    model = create_model(model_name, num_classes)
    size = layout.example_size(model.backbone)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, in_channels), jnp.float32))
    targets = traverse_util.flatten_dict(shapes)
    source = layout.normalize_keys(state_dict)

    skipped = sorted(key for key in source if any(re.search(pattern, key) for pattern in layout.skip))
    fresh_head_reason = _fresh_head_reason(layout, source, num_classes)
    if fresh_head_reason:
        targets_to_fill = {path: target for path, target in targets.items() if path[1] != "fc"}
        discarded_head = {f"{layout.head}.weight", f"{layout.head}.bias"} & set(source)
    else:
        targets_to_fill, discarded_head = targets, set()
    flat = _fill_strictly(model_name, layout, source, targets_to_fill, ignored=set(skipped) | discarded_head)

    if skipped:
        logger.info("%s: deliberately not imported (%d keys, see weights.LAYOUTS): %s", model_name, len(skipped),
                    ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""))
    if fresh_head_reason:
        flat.update(_fresh_head(targets, rng))
        logger.warning("%s: imported the backbone only; head 'fc' (%d classes) initialised fresh because %s",
                       model_name, num_classes, fresh_head_reason)
    return traverse_util.unflatten_dict(flat)


def _fresh_head_reason(layout: Layout, source: StateDict, num_classes: int) -> str:
    """Why the checkpoint's classifier cannot become our head `fc` ('' when it can)."""
    if layout.head is None:
        return "this family's torch classifier is not a GAP + fc head"
    weight = f"{layout.head}.weight"
    if weight not in source:
        return "the checkpoint has no classifier"
    if np.shape(source[weight])[0] != num_classes:
        return f"the checkpoint's classifier has {np.shape(source[weight])[0]} outputs"
    return ""


def _fill_strictly(model_name: str, layout: Layout, source: StateDict, targets: dict, ignored: set[str]) -> dict:
    """Every target variable from its torch key, or `IncompatibleCheckpointError` listing all that went wrong."""
    flat, used, missing, wrong_shape = {}, set(), [], []
    for (collection, *path), target in progress(targets.items(), total=len(targets), unit="tensor",
                                                desc=f"{model_name}: converting the checkpoint's tensors"):
        key = torch_key(layout, tuple(path))
        if key not in source:
            missing.append(f"{key} (for {collection}/{'/'.join(path)} {target.shape})")
            continue
        used.add(key)
        value = _to_flax_layout(path[-1], np.asarray(source[key], np.float32))
        if value.shape != target.shape:
            wrong_shape.append(f"{key}: checkpoint {np.shape(source[key])} → {value.shape}, model expects "
                               f"{target.shape}")
            continue
        flat[(collection, *path)] = value
    unexpected = sorted(set(source) - used - ignored)
    if missing or unexpected or wrong_shape:
        raise IncompatibleCheckpointError(model_name, sorted(missing), unexpected, sorted(wrong_shape))
    return flat


def _fresh_head(targets: dict, rng: jax.Array | int) -> dict:
    """Our head `fc` initialised as `Classifier` initialises it (Flax's Dense defaults)."""
    in_features, num_classes = targets[("params", "fc", "kernel")].shape
    rng = jax.random.key(rng) if isinstance(rng, int) else rng
    params = nn.Dense(num_classes).init(rng, jnp.zeros((1, in_features), jnp.float32))["params"]
    return {("params", "fc", name): np.asarray(value) for name, value in params.items()}


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A state dict as name → numpy array from .safetensors or .npz (no torch needed) or a torch pickle
    (.pth/.pt/.bin: needs torch; `{'state_dict': ...}` and `{'model': ...}` wrappers are unwrapped)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as error:
            raise ImportError(f"reading {path} needs the safetensors package (pip install safetensors)") from error
        return load_file(path)
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return {key: archive[key] for key in archive.files}
    if path.suffix in (".pth", ".pt", ".bin"):
        return _load_torch_pickle(path)
    raise ValueError(f"unknown checkpoint format {path.suffix!r} ({path}): use .safetensors, .npz, .pth, .pt or .bin")


def _load_torch_pickle(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"{path} is a PyTorch pickle: reading it needs torch (pip install torch), or convert it to "
                          f".safetensors / .npz where torch is installed") from error
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    return {key: tensor_to_numpy(value) for key, value in checkpoint.items()}


def tensor_to_numpy(tensor) -> np.ndarray:
    """numpy has no bfloat16: half-precision floats come back as float32."""
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.element_size() < 4:
        tensor = tensor.float()
    return tensor.numpy()


SOURCE_KEY = "cxrjax_source"  # the entry of a weights file that describes where its variables came from


def save_variables(path: str | Path, variables: Mapping[str, Any], source: Mapping[str, Any] | None = None) -> None:
    """Write Flax variables (nested dicts of arrays) as msgpack (flax.serialization), e.g. `densenet121.msgpack`.

    `source` (JSON-like: str, numbers, None, lists, dicts) travels in the same file under `SOURCE_KEY`: what a
    model needs besides its variables to see what it was trained on (e.g. `xrv.SourceModel.describe()`: the input
    scaling, the resolution, the operating points). One file, so the two cannot be separated."""
    state = jax.tree.map(np.asarray, serialization.to_state_dict(variables))
    if source is not None:
        state[SOURCE_KEY] = dict(source)
    with atomic.written_whole(path, "wb") as f:  # a killed import leaves no truncated file to be loaded later
        f.write(serialization.msgpack_serialize(state))


def _read(path: str | Path) -> dict[str, Any]:
    try:
        return serialization.msgpack_restore(Path(path).read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file {path} not found (made by `cxrjax import-weights`)") from None
    except Exception as error:  # noqa: BLE001 — msgpack raises several unrelated types on damaged bytes
        raise ValueError(f"{path} is not a weights file written by `cxrjax import-weights` ({error})") from None


def load_weights_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the variables written by `save_variables`, nested dicts of numpy arrays; the `source` saved with them, or
    None: an ImageNet import carries none)."""
    contents = _read(path)
    source = contents.pop(SOURCE_KEY, None)
    return contents, source


def load_variables(path: str | Path) -> dict[str, Any]:
    """The variables of a weights file (`load_weights_file` without the source)."""
    return load_weights_file(path)[0]


def load_source(path: str | Path) -> dict[str, Any] | None:
    """The source description of a weights file (`load_weights_file`)."""
    return load_weights_file(path)[1]
