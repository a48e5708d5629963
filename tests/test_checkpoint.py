"""The run's Orbax checkpoints keep both the best-by-validation-AUC step and the latest, whatever comes later; a kept
step restores by name or number (state, data-iterator position, JSON), and a step that is not kept says which are."""

from __future__ import annotations

import grain
import jax
import numpy as np
import pytest

from cxrjax import cli
from cxrjax.runtime import checkpoint

AUCS = {1: 0.60, 2: 0.90, 3: 0.55, 4: 0.70, 5: 0.80, 6: 0.65}  # step 2 best; then four worse, each the latest once


def batches():
    return iter(grain.MapDataset.range(1000).batch(2).to_iter_dataset())


def train_state(step: int) -> dict:
    return {"params": {"w": np.full((2, 3), step, np.float32)}, "batch_stats": {"mean": np.arange(3.0) + step},
            "step": np.asarray(step, np.int32)}


def save(mngr, step: int, data_iter, auc: float | None) -> None:
    """Saves step `step` with `data_iter` after `step` batches; `auc=None`: a mid-epoch (SIGTERM) checkpoint."""
    checkpoint.save(mngr, step, train_state(step), data_iter, {"step": step},
                    metrics=None if auc is None else {checkpoint.BEST_METRIC: auc}, extra={"thresholds": [step]})


@pytest.fixture
def workdir(tmp_path):
    """Steps 1..6 with their `AUCS` (more than the two the policy keeps), then a mid-epoch step 7 without a metric."""
    mngr, data_iter = checkpoint.manager(str(tmp_path)), batches()
    kept = []
    for step, auc in [*AUCS.items(), (7, None)]:
        next(data_iter)
        save(mngr, step, data_iter, auc)
        kept.append(mngr.all_steps())
    mngr.close()
    assert kept == [[1], [2], [2, 3], [2, 4], [2, 5], [2, 6], [2, 7]]  # best and latest, nothing else
    return str(tmp_path)


def assert_restores(mngr, step: int):
    data_iter = batches()
    state = checkpoint.restore(mngr, step, None, data_iter)
    expected = train_state(step)
    np.testing.assert_array_equal(state["params"]["w"], expected["params"]["w"])
    np.testing.assert_array_equal(state["batch_stats"]["mean"], expected["batch_stats"]["mean"])
    assert int(state["step"]) == step
    assert next(data_iter).tolist() == [2 * step, 2 * step + 1]  # the iterator resumes after `step` batches
    assert checkpoint.restore_json(mngr, step, "config") == {"step": step}
    assert checkpoint.restore_json(mngr, step, "extra") == {"thresholds": [step]}


def test_best_and_latest_are_kept_and_restore(workdir):
    mngr = checkpoint.manager(workdir)  # a new manager, as a later `cxrjax eval` or a resumed run opens it
    assert mngr.all_steps() == [2, 7]
    assert checkpoint.resolve_step(mngr, "best") == 2 and checkpoint.resolve_step(mngr, "latest") == 7
    assert_restores(mngr, 2)
    assert_restores(mngr, 7)

    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), train_state(0))  # as on resumption
    state = checkpoint.restore(mngr, checkpoint.resolve_step(mngr, "best"), abstract)
    np.testing.assert_array_equal(state["params"]["w"], train_state(2)["params"]["w"])

    next_iter = batches()  # a validated step after the mid-epoch one: that one goes, the best stays
    for _ in range(8):
        next(next_iter)
    save(mngr, 8, next_iter, 0.5)
    assert mngr.all_steps() == [2, 8] and checkpoint.resolve_step(mngr, "best") == 2
    save(mngr, 9, next_iter, 0.95)  # a new best replaces the old one, and is the latest too
    assert mngr.all_steps() == [9] and checkpoint.resolve_step(mngr, "best") == 9
    mngr.close()


def test_a_kept_step_restores_by_number(workdir):
    for which in ("2", 2, "7"):  # `--checkpoint STEP` passes a string
        step, config, extra, variables = checkpoint.load_variables(workdir, which)
        assert step == int(which) and config == {"step": step} and extra == {"thresholds": [step]}
        np.testing.assert_array_equal(variables["params"]["w"], train_state(step)["params"]["w"])
        np.testing.assert_array_equal(variables["batch_stats"]["mean"], train_state(step)["batch_stats"]["mean"])
    step, *_ = checkpoint.load_variables(workdir)  # the default is the best
    assert step == 2


def test_a_step_not_kept_or_not_a_step_is_a_clear_error(workdir, tmp_path_factory):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 3 in .*checkpoints; saved steps: \[2, 7\]"):
        checkpoint.load_variables(workdir, "3")
    with pytest.raises(ValueError, match="checkpoint 'bset': expected best, latest or a step number"):
        checkpoint.load_variables(workdir, "bset")
    empty = str(tmp_path_factory.mktemp("empty"))
    with pytest.raises(FileNotFoundError, match="no checkpoints in"):
        checkpoint.load_variables(empty, "latest")


def test_best_without_any_validated_checkpoint_is_an_error_not_the_latest(tmp_path):
    """Orbax's `best_step()` is None then, and `restore(None)` would silently restore the latest step."""
    mngr = checkpoint.manager(str(tmp_path))
    save(mngr, 1, batches(), None)
    mngr.close()
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .* has a validation score \(saved steps: "
                                                r"\[1\]\); choose --checkpoint latest or a step"):
        checkpoint.load_variables(str(tmp_path), "best")
    assert checkpoint.load_variables(str(tmp_path), "latest")[0] == 1


def test_cli_missing_step_is_one_line_and_nonzero(workdir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))  # leave JAX's cache setting alone
    assert cli.main(["predict", "--workdir", workdir, "--checkpoint", "3", str(tmp_path / "x.png")]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("cxrjax predict: error: no checkpoint at step 3")


def test_best_by_lowest_validation_loss(tmp_path):
    """`select_best_by = "val_loss"`: the checkpoint of the lowest validation loss is best (CheXNet), whatever its
    AUC; an undefined figure never ranks."""
    assert checkpoint.selection_metrics("val_loss", {"loss": 0.3, "mean_auc": 0.7}) == {
        checkpoint.BEST_METRIC: -0.3, "val_loss": 0.3}
    assert checkpoint.selection_metrics("val_mean_auc", {"loss": 0.3, "mean_auc": None}) is None
    with pytest.raises(ValueError, match="unknown select_best_by"):
        checkpoint.selection_metrics("val_f1", {"loss": 0.3, "mean_auc": 0.7})
    mngr, data_iter = checkpoint.manager(str(tmp_path)), batches()
    for step, (loss, auc) in enumerate([(0.5, 0.9), (0.2, 0.6), (0.4, 0.95)], start=1):
        next(data_iter)
        checkpoint.save(mngr, step, train_state(step), data_iter, {"step": step},
                        metrics=checkpoint.selection_metrics("val_loss", {"loss": loss, "mean_auc": auc}))
    mngr.wait_until_finished()
    assert checkpoint.resolve_step(mngr, "best") == 2
    mngr.close()
