"""cxrjax: multi-label chest X-ray classification on NIH ChestX-ray14 in JAX/Flax."""

from cxrjax.data.findings import FINDINGS, NUM_FINDINGS

__all__ = ["FINDINGS", "NUM_FINDINGS"]
