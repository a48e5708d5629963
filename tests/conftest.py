"""Shared test set-up.

Eight fake CPU devices for the whole suite (set before JAX starts), so that every training test also exercises the
sharded data-parallel path; absl flags marked parsed because grain and orbax read them.
"""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import collections  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

from cxrjax.metrics import published  # noqa: E402

flags.FLAGS.mark_as_parsed()

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def shared_data(*parts: str) -> str:
    """A path under ../shared/data, skipping the test with the reason when that folder is absent."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real NIH data not available ({os.path.abspath(path)} is absent)")
    return path


def torchvision_model(name: str):
    """torchvision's model of backbone `name`, built by its constructor or, for the backbones torchvision has no
    constructor of, from its classes: Baltruschat's ResNet-38 (our reading, `resnet.ResNet38`) is torchvision's
    ResNet with bottleneck blocks (2, 3, 5, 2). Shared by the parity and the weight-import tests, so both see the same
    reference."""
    models = pytest.importorskip("torchvision").models
    if name == "resnet38":
        return models.resnet.ResNet(models.resnet.Bottleneck, [2, 3, 5, 2])
    return getattr(models, name)()


class TraceCounter:
    """`with TraceCounter() as traces:` counts JAX traces by function name (JAX records one event per trace of a
    jitted function): the trace-counting tests of training and evaluation."""

    def __init__(self):
        self.traces = collections.Counter()

    def _listen(self, event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            self.traces[kwargs.get("fun_name")] += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self.traces

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)


@pytest.fixture(scope="session")
def synthetic_release(tmp_path_factory):
    """A small synthetic release: 400 images of 64² pixels."""
    from data_pipelines import synthetic

    directory = tmp_path_factory.mktemp("release")
    synthetic.write_release(directory, num_images=400, size=64, seed=1)
    return str(directory)


@pytest.fixture(scope="session")
def prepared_shards(synthetic_release, tmp_path_factory):
    """The synthetic release prepared at 32² (the smallest size CNNs admit)."""
    from data_pipelines.prepare import prepare

    data_dir = str(tmp_path_factory.mktemp("data"))
    prepared = prepare(synthetic_release, data_dir, size=32, num_workers=1)
    return data_dir, prepared.builder_dir


# Float32 agreement of computations that are the same mathematics but not the same program.
#
# XLA:CPU picks its convolution and matmul kernels, and with them the order in which each reduction is summed, by
# batch shape, device count and instruction set (AVX2, AVX-512, ...). So the same image in a batch of 2 and in a
# batch of 8, one device and eight, or a forward pass inside Grad-CAM's gradient program, differ by rounding: each
# of a network's ~20 reductions over K ≤ 4,608 terms is off by about sqrt(K)·2⁻²⁴ of its terms' size, and the
# differences add up through the depth. What that can promise is a bound *relative to the scale of the result*,
# not an absolute one: the ResNet-18 of tests/test_predict.py (logits of RMS ≈ 12) gave |Δlogit| ≤ 1.5e-5 between
# batches of 2, 3 and 8 on AVX-512, i.e. 1.3e-6 of the logits' RMS; on the machine of the CI failure an absolute
# 1e-6 in probability was exceeded by 2.7e-6 near p = 0.54. A real fault is of the size of the logits themselves:
# a padded or neighbouring row leaking into a real one moved them by 2 (1.6e-1 of the RMS), BatchNorm in training
# mode by 25. FORWARD_RTOL = 1e-5 of the RMS leaves 8x headroom over the rounding and 10⁴x below a fault.
FORWARD_RTOL = 1e-5
PROBABILITY_ROUNDING = 2.0 ** -23  # one float32 ulp of a probability below 1 (≤ 2⁻²⁴), on each side


def logit_scale(probabilities) -> float:
    """RMS of the logits behind float32 probabilities (at least 1): the scale their rounding errors are relative to.
    Probabilities that rounded to 0 or 1 are clipped to float32's last representable logits (about ±17)."""
    p = np.clip(np.asarray(probabilities, np.float64), 2.0 ** -126, 1 - 2.0 ** -24)
    return max(1.0, float(np.sqrt(np.mean(np.log(p / (1 - p)) ** 2))))


def assert_same_forward(actual, expected, *, scale: float | None = None, rtol: float = FORWARD_RTOL):
    """Probabilities from two float32 forward passes of the same inputs by different programs (batch shape, device
    count, a gradient program) agree within rounding: |Δp| ≤ p(1−p)·|Δlogit| + rounding of p, with |Δlogit| ≤
    rtol · `scale` (default: `logit_scale(expected)`). Also right for probabilities averaged over views (TTA):
    p(1−p) is concave, so at the average it bounds the average of the views' slopes."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    logit_bound = rtol * (logit_scale(expected) if scale is None else scale)
    bound = expected * (1 - expected) * logit_bound + PROBABILITY_ROUNDING
    excess = np.abs(actual - expected) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, (f"forward passes differ beyond float32 rounding at {worst}: {actual[worst]} vs "
                                f"{expected[worst]}, allowed ±{bound[worst]:.3g} (|Δlogit| ≤ {logit_bound:.3g})")


# Training steps on one device and on several (or several processes) differ by the order of the gradient all-reduce
# and of BatchNorm's batch statistics. The parameters' updates are gradients times the rate, so their rounding is
# relative to the update's own size, and a parameter also rounds by an ulp of its value when the update is added.
# Measured on one SGD step of ResNet-18 (tests/test_train.py): |Δ| ≤ 2.1e-4 of the RMS of a leaf's update, worst in
# layer4, whose BatchNorm normalises 16 examples of 1×1 maps and so amplifies rounding. A fault (statistics or
# gradients of one device's share instead of the global batch) changes an update by its own size. UPDATE_RTOL =
# 2e-3 of the update's RMS: 10x over the rounding, 500x below a fault.
UPDATE_RTOL = 2e-3


def assert_same_training(actual: dict, expected: dict, initial: dict, *, rtol: float = UPDATE_RTOL):
    """Leaves (name → array) after the same training steps run by different programs agree within rounding:
    |Δ| ≤ rtol · RMS(expected − initial) + 2 ulp(max |expected|), leaf by leaf."""
    assert sorted(actual) == sorted(expected) == sorted(initial)
    for name in expected:
        a, e, i = (np.asarray(tree[name], np.float64) for tree in (actual, expected, initial))
        update_rms = float(np.sqrt(np.mean((e - i) ** 2)))
        bound = rtol * update_rms + 2 * np.finfo(np.float32).eps * float(np.abs(e).max())
        difference = float(np.abs(a - e).max())
        assert difference <= bound, (f"{name}: differs by {difference:.3g} beyond float32 rounding (allowed "
                                     f"{bound:.3g}; the update's RMS is {update_rms:.3g})")


def train_one_epoch(data_dir: str, workdir: str, size: int = 32, crop: int = 28) -> str:
    """A ResNet-18 classifier trained for one epoch on the shards of `data_dir` (batch 16, Adam 1e-3): a small real
    checkpoint, with validation operating points, for the inference tests."""
    from cxrjax.configs import default
    from cxrjax.training import train

    config = default.get_config()
    config.data.data_dir, config.data.size, config.data.crop = data_dir, size, crop
    config.data.num_threads = 2
    config.batch_size, config.eval_batch_size, config.num_epochs = 16, 32, 1
    config.optimizer.learning_rate = 1e-3
    train.train_and_evaluate(config, workdir)
    return workdir


def real_run(protocol: str, labels: str = published.LABELS_2017, split: str = "test",
             num_images: int | None = published.RELEASE_IMAGES,
             num_official_test: int | None = published.OFFICIAL_TEST_IMAGES) -> published.Measured:
    """What a run of `protocol` on the whole NIH release measures on, by default; None for a fact not stated."""
    return published.Measured(protocol=protocol, split=split, labels=labels, num_images=num_images,
                              num_official_test=num_official_test)


def write_png(path: str, array: np.ndarray, significant_bits: int | None = None) -> str:
    """`array` as a PNG at `path` (folders made), with an sBIT chunk of `significant_bits` when given."""
    from PIL import Image, PngImagePlugin

    os.makedirs(os.path.dirname(path), exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if significant_bits is not None:
        info.add(b"sBIT", bytes([significant_bits]))
    Image.fromarray(array).save(path, pnginfo=info)
    return path
