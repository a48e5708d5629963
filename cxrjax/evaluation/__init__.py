"""Layer 6, evaluation: the jitted forward over a split (`forward`), loading a trained run from its checkpoint
(`load`), `cxrjax eval` (`evaluate`), `cxrjax score`, the report and its plots, k-fold aggregation. Below training,
which validates with the same forward and metrics."""
