"""Evaluation: test-time augmentation inside one compiled step, and ensembles over run directories."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cxrjax import evaluate
from cxrjax.models import create_model


@pytest.fixture(scope="module")
def model_and_variables():
    model = create_model("resnet18", 14)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)), train=False)
    return model, variables


def test_flip_and_tencrop_average_the_right_views(model_and_variables):
    model, variables = model_and_variables
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1), dtype=np.uint8)
    plain = evaluate.make_predict_step(model, jnp.float32)
    flip = evaluate.make_predict_step(model, jnp.float32, tta="flip")
    centre = images[:, 2:30, 2:30]
    expected_flip = (plain(variables, centre) + plain(variables, centre[:, :, ::-1])) / 2
    np.testing.assert_allclose(flip(variables, centre), expected_flip, atol=1e-6)

    tencrop = evaluate.make_predict_step(model, jnp.float32, tta="tencrop", crop=28)
    windows = [images[:, t:t + 28, l:l + 28] for t, l in ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2))]
    views = windows + [w[:, :, ::-1] for w in windows]
    expected = np.mean([plain(variables, v) for v in views], axis=0)
    np.testing.assert_allclose(tencrop(variables, images), expected, atol=1e-6)
    assert tencrop._cache_size() == 1
    tencrop(variables, images[::-1])
    assert tencrop._cache_size() == 1  # same shapes: no recompilation


def test_unknown_tta_is_refused(model_and_variables):
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        evaluate.tta_views(jnp.zeros((1, 8, 8, 1)), "rotate", 4)
