"""The config checked once, before anything is built: every value out of range in one line, and an unknown field
with the closest one named.

Why here and not where each value is used: a batch size of 0 otherwise surfaces as a ZeroDivisionError deep in the
pipeline, a crop larger than the image as a shape error in the first jitted step, minutes later and far from the
flag that caused it. The names (model, loss, protocol, optimizer) are checked by the registries that own them.
"""

from __future__ import annotations

import difflib
import math

import ml_collections


def field_names(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every dotted field of `config`, sections and the keys inside dict-valued fields (losses) included."""
    names = []
    for key, value in config.items():
        names.append(f"{prefix}{key}")
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            names += field_names(ml_collections.ConfigDict(value) if isinstance(value, dict) else value,
                                 f"{prefix}{key}.")
    return names


def unknown_field(config: ml_collections.ConfigDict, name: str) -> str:
    """The one-line error for `--config.NAME=...` where `config` has no field NAME, naming the closest field."""
    close = difflib.get_close_matches(name, field_names(config), n=1, cutoff=0.6)
    hint = f"did you mean --config.{close[0]}?" if close else "`cxrjax train --help` lists them"
    return f"--config.{name}: the config has no field {name!r}; {hint}"


def _problems(config: ml_collections.ConfigDict) -> list[str]:
    data = config.data
    problems = []

    def require(condition: bool, text: str) -> None:
        if not condition:
            problems.append(text)

    for name in ("batch_size", "eval_batch_size", "num_epochs", "log_every_steps", "prefetch_batches"):
        require(config[name] >= 1, f"{name} must be at least 1 (got {config[name]})")
    require(config.steps_per_epoch >= 0, f"steps_per_epoch must be 0 (whole split) or more (got "
                                         f"{config.steps_per_epoch})")
    require(data.size >= 1, f"data.size must be at least 1 (got {data.size})")
    require(1 <= data.crop <= data.size, f"data.crop must be between 1 and data.size {data.size} (got {data.crop})")
    require(data.num_threads >= 1, f"data.num_threads must be at least 1 (got {data.num_threads})")
    require(data.num_workers >= 0, f"data.num_workers must be 0 or more (got {data.num_workers})")
    require(0 <= data.rotation <= 180, f"data.rotation must be between 0 and 180 degrees (got {data.rotation})")
    if data.protocol in ("official", "official_images"):
        require(0 < data.val_fraction < 1, f"data.val_fraction must be between 0 and 1 (got {data.val_fraction})")
    if data.protocol in ("random", "resample"):
        fractions = tuple(data.fractions)
        require(len(fractions) == 3 and all(f > 0 for f in fractions) and math.isclose(sum(fractions), 1.0),
                f"data.fractions must be three positive shares of train, val and test summing to 1 (got "
                f"{fractions})")
    if data.protocol == "kfold":
        require(data.num_folds >= 2, f"data.num_folds must be at least 2 (got {data.num_folds})")
        require(0 <= data.fold < max(data.num_folds, 1), f"data.fold must be between 0 and data.num_folds - 1 = "
                                                         f"{data.num_folds - 1} (got {data.fold})")
    optimizer = config.optimizer
    # Written so that NaN passes: a non-finite rate is the divergence guard's to stop, naming the step.
    require(not optimizer.learning_rate < 0, f"optimizer.learning_rate must not be negative (got "
                                             f"{optimizer.learning_rate})")
    require(optimizer.decay_factor > 0, f"optimizer.decay_factor must be positive (got {optimizer.decay_factor})")
    require(optimizer.decay_every_epochs >= 0, f"optimizer.decay_every_epochs must be 0 (constant) or more (got "
                                               f"{optimizer.decay_every_epochs})")
    require(optimizer.plateau_patience >= 1, f"optimizer.plateau_patience must be at least 1 (got "
                                             f"{optimizer.plateau_patience})")
    require(config.divergence_factor == 0 or config.divergence_factor > 1,
            f"divergence_factor must be 0 (off) or above 1 (got {config.divergence_factor})")
    return problems


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError listing every value out of range, in one line."""
    problems = _problems(config)
    if problems:
        raise ValueError(f"config: {'; '.join(problems)}")
