"""The config arguments of an experiment file: `--config experiments/x.py:ARG,ARG` reaches its `get_config(argument)`.

Kept apart from `default.py` so that the base config shows values only, and shared by every experiment file so that
all of them read their arguments alike: a comma-separated set, every word checked (a typo is an error, not the
default row), mutually exclusive choices refused together (never silently reduced to one), and the two arguments
every file accepts, `:smoke` and `:scratch`, applied last (`finish`) on top of whatever the row set.
"""

import ml_collections

COMMON_ARGUMENTS = ("smoke", "scratch")  # accepted by every experiment file


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a paper config to seconds on the synthetic release (`--config experiments/x.py:smoke`), so that CI can
    run every row: the same model, losses and training code; two steps of batch 8 (divisible by 8 devices) and an
    evaluation; random init. Swin keeps its 224² input (its windows need 7 x 32 pixels); CNNs train on 56² crops of
    64² shards."""
    swin = config.model.name.startswith("swin")
    config.data.size, config.data.crop = (256, 224) if swin else (64, 56)
    config.data.num_threads = 2
    config.model.pretrained = config.model.pretrained_second = config.model.init_from = ""
    config.model.require_pretrained = False  # the synthetic release has no weights to start from
    config.model.require_init_from = False  # nor a stage 1 to start from (a test that has one sets init_from)
    config.batch_size, config.eval_batch_size = 8, 8
    config.num_epochs, config.steps_per_epoch, config.log_every_steps = 1, 2, 1
    return config


def finish(config: ml_collections.ConfigDict, arguments: set[str]) -> ml_collections.ConfigDict:
    """Applies the arguments every experiment file takes, after the row's own values so that they win over them:
    `:scratch` (random init instead of the paper's ImageNet start: clears `model.require_pretrained`) and `:smoke`
    (`smoke`)."""
    if "scratch" in arguments:
        config.model.require_pretrained = False
    return smoke(config) if "smoke" in arguments else config


def parse_arguments(argument: str | None, choices: tuple[str, ...] = ()) -> set[str]:
    """`get_config("large,smoke")` → {"large", "smoke"}; anything but `smoke`, `scratch` and `choices` is an error,
    so that a misspelt row never trains as the default one."""
    arguments = {a.strip() for a in (argument or "").split(",") if a.strip()}
    allowed = [*COMMON_ARGUMENTS, *(c for c in choices if c not in COMMON_ARGUMENTS)]
    unknown = arguments - set(allowed)
    if unknown:
        raise ValueError(f"unknown config argument(s) {sorted(unknown)}; choose from {allowed}")
    return arguments


def choose(arguments: set[str], choices: tuple[str, ...], default: str) -> str:
    """The one argument of the mutually exclusive `choices` that was given, `default` when none was; a ValueError
    when several were (`:local1,local2` is not a config)."""
    chosen = [c for c in choices if c in arguments]
    if len(chosen) > 1:
        raise ValueError(f"config arguments {chosen} exclude each other: give at most one of {list(choices)}")
    return chosen[0] if chosen else default
