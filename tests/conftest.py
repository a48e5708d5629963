"""Shared test set-up.

Eight fake CPU devices for the whole suite (set before JAX starts), so that every training test also exercises the
sharded data-parallel path; absl flags marked parsed because grain and orbax read them.
"""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import collections  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def shared_data(*parts: str) -> str:
    """A path under ../shared/data, skipping the test with the reason when that folder is absent."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real NIH data not available ({os.path.abspath(path)} is absent)")
    return path


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
