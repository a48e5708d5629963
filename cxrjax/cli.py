"""The `cxrjax` command: thin subcommands over the library's layers (README: the commands; docs/ARCHITECTURE.md).

Errors a user can fix (missing files, bad input, a diverged run) print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys

from absl import flags, logging
from tqdm.contrib.logging import logging_redirect_tqdm

from cxrjax.data import atomic


def _wrote(line: str | None) -> None:
    """A command's last line, on stderr: what it wrote and where (None: it wrote nothing but what it printed)."""
    print(line or "nothing written (--output FILE keeps the results as JSON)", file=sys.stderr)


def _write_json(path: str | None, result: dict) -> None:
    """Writes `--output` JSON, whole or not at all (`data.atomic`), when one was asked for."""
    if path:
        atomic.write_json(path, result)


def _demo(args) -> int:
    from cxrjax.tools.demo import run_demo

    result = run_demo(args.workdir, num_images=args.num_images, num_epochs=args.epochs)
    _wrote(f"demo: the release, shards and run in {args.workdir}; the run's report in {result['written_to']}")
    return 0


def _prepare(args) -> int:
    from data_pipelines.prepare import prepare

    prepared = prepare(args.source, args.data_dir, size=args.size, labels=args.labels, num_workers=args.workers)
    if prepared.report is None:
        print(f"shards already prepared in {prepared.builder_dir}; nothing to do")
    else:
        print(f"prepare: {prepared.report.summary()}; shards in {prepared.builder_dir}; report in "
              f"{args.data_dir}/prepare_report.json")
    return 0


def _define_config_flags(argv: list[str], define_extra=lambda flag_values: None):
    """The absl flags of `train` and `ablate` (ml_collections' config flags), defined for parsing and for --help."""
    from ml_collections import config_flags

    flag_values = flags.FlagValues()
    config_flag = config_flags.DEFINE_config_file(
        "config", None, "the experiment config: a get_config() file, e.g. experiments/ge2018_r18.py, or a paper "
        "config shipped in the package, cxrjax:experiments/ge2018_r18.py; `:ARGS` selects a row's variant "
        "(`:smoke`: two steps on the synthetic release)", flag_values=flag_values, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "the run's folder: checkpoints, metrics.jsonl, tensorboard/, later eval/; "
                        "re-running on a folder with checkpoints resumes it", flag_values=flag_values)
    define_extra(flag_values)
    return config_flag, flag_values


def _config_flags(argv: list[str], define_extra=lambda flag_values: None):
    """Parses `--config FILE[:ARG] --workdir DIR [--config.FIELD=VALUE ...]` (ml_collections' config flags)."""
    config_flag, flag_values = _define_config_flags(argv, define_extra)
    try:
        flag_values(argv)
    except (AttributeError, KeyError):  # ml_collections' answer to `--config.FIELD` for a field the config lacks
        config = flag_values["config"].parser.parse(_config_file(argv))  # the file's config, before any override
        raise ValueError(_unknown_override(argv, config)) from None
    except flags.Error as error:
        # An exception inside get_config reaches here as ml_collections' message with the whole traceback in it:
        # keep its first line and the exception's own line.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ValueError(lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}") from None
    if config_flag.value is None or flag_values.workdir is None:
        raise ValueError("needs --config FILE and --workdir DIR")
    return config_flag.value, flag_values


def _unknown_override(argv: list[str], config) -> str:
    """The error line for the first `--config.FIELD=VALUE` of `argv` whose field `config` does not have."""
    from cxrjax.configs import checks

    known = set(checks.field_names(config))
    for argument in argv:
        if argument.startswith("--config."):
            name = argument[len("--config."):].split("=", 1)[0]
            if name not in known:
                return checks.unknown_field(config, name)
    return "a --config.FIELD override names no field of the config; `cxrjax train --help` lists them"


_CONFIG_COMMANDS = {
    "train": ("cxrjax train --config FILE[:ARGS] --workdir DIR [--config.FIELD=VALUE ...] [--accept_config_change]",
              "Trains the run a config describes, validating and checkpointing every epoch; re-running on the same "
              "workdir resumes, SIGTERM saves and exits 0."),
    "ablate": ("cxrjax ablate --config FILE[:ARGS] --workdir DIR --loss SPEC [--loss SPEC ...] [--split test] "
               "[--config.FIELD=VALUE ...]",
               "Trains one run per --loss (e.g. bce, focal, class_aware:margin=0) on the same data and seed and prints "
               "their AUCs side by side."),
}


def _config_file(argv: list[str]) -> str | None:
    """The FILE[:ARGS] of `--config FILE` or `--config=FILE` in `argv`, if any."""
    for i, argument in enumerate(argv):
        if argument.startswith("--config="):
            return argument.split("=", 1)[1]
        if argument == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


PACKAGED = "cxrjax:"  # `--config cxrjax:experiments/X.py`: a config file shipped inside the installed package


def _packaged_config(spec: str) -> str:
    """`cxrjax:experiments/X.py[:ARGS]` → the path of that file inside the installed package, `:ARGS` kept.

    Why: an installed package has no `experiments/` folder beside the user's shell; the paper configs ship inside it
    as `cxrjax.experiments` (setup.py), and ml_collections' config flag loads a file path, so the name is resolved
    to the path before it parses. `cxrjax:configs/demo.py` names the package's own configs the same way."""
    import importlib.resources

    name, colon, arguments = spec.removeprefix(PACKAGED).partition(":")
    *folders, file = name.split("/")
    path = None
    if file.endswith(".py") and all(folder.isidentifier() for folder in folders):
        try:
            path = importlib.resources.files(".".join(["cxrjax", *folders])) / file
        except ModuleNotFoundError:
            pass
    if path is None or not path.is_file():
        shipped = sorted(entry.name.removesuffix(".py") for entry in
                         importlib.resources.files("cxrjax.experiments").iterdir()
                         if entry.name.endswith(".py") and not entry.name.startswith("_"))
        raise ValueError(f"no config {name} in the installed package; its paper configs are "
                         f"{PACKAGED}experiments/X.py for X in {', '.join(shipped)}")
    return f"{path}{colon}{arguments}"


def _with_packaged_config(argv: list[str]) -> list[str]:
    """`argv` with a `--config cxrjax:...` value replaced by the file's path (`_packaged_config`)."""
    spec = _config_file(argv)
    if spec is None or not spec.startswith(PACKAGED):
        return argv
    path = _packaged_config(spec)
    return [path if argument == spec else f"--config={path}" if argument == f"--config={spec}" else argument
            for argument in argv]


def _config_help(command: str, argv: list[str]) -> str:
    """`cxrjax train --help`: the usage, then every config field with its value and its comment, from the base
    config or, after `--config FILE[:ARGS]`, from that file."""
    import importlib.util
    import inspect
    import textwrap

    from cxrjax.configs import default, fields

    usage, description = _CONFIG_COMMANDS[command]
    _, flag_values = _define_config_flags([f"cxrjax {command}"], _COMMAND_FLAGS[command])
    options = []
    for name in flag_values:
        flag = flag_values[name]
        default_text = "(required)" if flag.default is None else f"(default: {flag.default})"
        options.append(textwrap.fill(f"--{name}: {' '.join(flag.help.split())} {default_text}", width=120,
                                     initial_indent="  ", subsequent_indent="      "))
    spec = _config_file(argv)
    if spec is None:
        config, source = default.get_config(), "the base config, cxrjax/configs/default.py"
    else:
        path, _, argument = spec.partition(":")
        loader = importlib.util.spec_from_file_location("cxrjax_help_config", path)
        if loader is None or not os.path.isfile(path):
            raise ValueError(f"config file {path} not found")
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        takes_argument = bool(inspect.signature(module.get_config).parameters)
        config = module.get_config(argument or None) if takes_argument else module.get_config()
        source = spec
    options_text = "\n".join(options)
    return f"usage: {usage}\n\n{description}\n\nflags:\n{options_text}\n\n{fields.describe(config, source)}"


def _define_train_flags(flag_values) -> None:
    flags.DEFINE_bool("accept_config_change", False, "resume a workdir although the config changed in a field "
                      "that changes the run (model, losses, data, batch size, optimizer, seed)",
                      flag_values=flag_values)


def _define_ablate_flags(flag_values) -> None:
    flags.DEFINE_multi_string("loss", None, "a loss spec, e.g. bce, focal or class_aware:margin=0: one run per spec, "
                              "each in its own folder under WORKDIR", flag_values=flag_values)
    flags.DEFINE_string("split", "test", "the split of the config's protocol whose AUCs the table compares",
                        flag_values=flag_values)


def _train(argv: list[str]) -> int:
    from cxrjax.runtime import sharding
    from cxrjax.training import train

    config, flag_values = _config_flags(argv, _define_train_flags)
    sharding.initialize_distributed()
    with train.StopOnSignal() as stop:
        result = train.train_and_evaluate(config, flag_values.workdir, stop_requested=stop,
                                          accept_config_change=flag_values.accept_config_change)
    if result["stopped_early"]:
        print(f"stopped by signal at step {result['step']}; checkpoint saved; re-run to resume")
    else:
        print(f"trained to step {result['step']}; last validation mean AUC {result['val_mean_auc']}")
    _wrote(f"train: checkpoints, metrics.jsonl and TensorBoard logs in {flag_values.workdir}")
    return 0


def _ablate(argv: list[str]) -> int:
    from cxrjax.runtime import sharding
    from cxrjax.tools import ablation
    from cxrjax.training import train

    config, flag_values = _config_flags(argv, _define_ablate_flags)
    if not flag_values.loss:
        raise ValueError("ablate needs at least one --loss")
    sharding.initialize_distributed()
    with train.StopOnSignal() as stop:
        results = ablation.run_ablation(config, flag_values.workdir, flag_values.loss, flag_values.split, stop)
    print(ablation.ablation_table(results))
    _wrote(f"ablate: one run per loss (its checkpoints and eval/{flag_values.split}/) and ablation.json in "
           f"{flag_values.workdir}")
    return 0


_COMMAND_FLAGS = {"train": _define_train_flags, "ablate": _define_ablate_flags}  # beyond --config and --workdir


def _eval(args) -> int:
    from cxrjax import metrics
    from cxrjax.evaluation import evaluate
    from cxrjax.runtime import sharding

    sharding.initialize_distributed()
    expert = _expert(args)
    if args.weights:
        if not (args.data_dir and args.out):
            raise ValueError("eval --weights needs --data-dir (shards prepared at the model's resolution) and --out "
                             "(where to write the evaluation)")
        if args.ensemble:
            raise ValueError("--ensemble combines trained workdirs; evaluate an imported model alone")
        result = evaluate.evaluate_weights(args.weights, args.out, args.split, data_dir=args.data_dir, tta=args.tta,
                                           bootstrap=args.bootstrap, expert=expert)
    else:
        result = evaluate.evaluate_workdir(args.workdir, args.checkpoint, args.split, ensemble=args.ensemble,
                                           tta=args.tta, bootstrap=args.bootstrap, data_dir=args.data_dir,
                                           expert=expert)
    print(metrics.auc_table(result))
    _print_expert(result)
    _wrote(f"eval: predictions.csv, metrics.json, report.md, roc.png and pr.png in {result['written_to']}")
    return 0


def _score(args) -> int:
    from cxrjax import metrics
    from cxrjax.evaluation.score import score

    expert = _expert(args)
    result = score(args.predictions, args.labels, args.images, bootstrap=args.bootstrap, expert=expert)
    _write_json(args.output, result)
    print(metrics.auc_table(result))
    _print_expert(result)
    _wrote(f"score: metrics in {args.output}" if args.output else None)
    return 0


def _expert(args):
    """The radiologists' labels `--expert-labels` names, if any."""
    from cxrjax.evaluation import expert_labels

    return expert_labels.read_expert_labels(args.expert_labels, args.expert_split) if args.expert_labels else None


def _print_expert(result: dict) -> None:
    from cxrjax.evaluation import expert_labels

    if "expert" in result:
        print(expert_labels.format_grade(result["expert"]))


def _expert_arguments(parser) -> None:
    parser.add_argument("--expert-labels", default=None, metavar="CSV",
                        help="radiologist-adjudicated labels (Majkowska et al. 2020, Google's "
                             "google2019_nih-chest-xray-labels.csv[.gz]): also grade the images they cover against "
                             "them, beside NIH's labels of the same images")
    parser.add_argument("--expert-split", choices=("test", "val", "all"), default="test",
                        help="which of the expert file's images (its Set Id) to grade; its test images all lie in "
                             "the official test split")


def _predict(args) -> int:
    from cxrjax.data import nih
    from cxrjax.evaluation.load import load_run, load_weights
    from cxrjax.inference import explain, predict

    metadata = predict.Metadata(age=args.age, sex=args.sex, view=args.view)
    inference = load_weights(args.weights) if args.weights else load_run(args.workdir, args.checkpoint)
    thresholds = predict.decision_thresholds(inference, args.rule)
    results, errors = predict.predict_files(inference, args.images, thresholds=thresholds, metadata=metadata)
    print((predict.format_json if args.json else predict.format_table)(results, errors, thresholds))  # errors too
    if args.cam and results:
        findings = _names(args.findings) if args.findings else None
        boxes = nih.read_boxes(args.boxes) if args.boxes else ()
        written, _ = explain.write_cam_overlays(inference, [r.path for r in results], args.cam,
                                                thresholds=thresholds, findings=findings, top_k=args.top_k,
                                                boxes=boxes, metadata=metadata)
        chosen = ("the findings asked for" if findings else f"the {args.top_k} most probable findings"
                  if args.top_k else "the findings at or above their operating point")
        print(f"{len(written)} Grad-CAM pictures ({chosen}) in {args.cam}", file=sys.stderr)
    return 1 if errors else 0


def _localize(args) -> int:
    from cxrjax.inference import localize

    result, rows = localize.localize_workdir(args.workdir, args.boxes, which=args.checkpoint, split=args.split,
                                            fraction=args.fraction, out_dir=args.out)
    _write_json(args.output, result)
    print(localize.format_localization(result))
    written = [f"the metrics in {args.output}"] * bool(args.output) + [
        f"{len(rows)} pictures of CAM boxes against expert boxes in {args.out}"] * bool(args.out)
    _wrote(f"localize: {' and '.join(written)}" if written else None)
    return 0


def _folds(args) -> int:
    from cxrjax.evaluation.folds import aggregate_folds, folds_table

    result = aggregate_folds(args.workdirs, args.split)
    _write_json(args.output, result)
    print(folds_table(result))
    _wrote(f"folds: the aggregate in {args.output}" if args.output else None)
    return 0


def _import_weights(args) -> int:
    from cxrjax.models import weights

    if args.source_kind == "torchxrayvision":
        from cxrjax.models import xrv

        variables, source = xrv.from_torchxrayvision(args.source, args.model)
        weights.save_variables(args.out, variables, source=source)
        size = source["resolution"]
        print(f"{args.source} → {args.out} (torchxrayvision {args.model} as {source['backbone']}: 14 findings, "
              f"dropped {', '.join(source['dropped_outputs'])}; not trained on: "
              f"{', '.join(source['untrained']) or 'none'})\n"
              f"  predict with it: cxrjax predict --weights {args.out} SCAN.png\n"
              f"  evaluate it untrained: cxrjax eval --weights {args.out} --data-dir DATA --out DIR "
              f"(shards of `cxrjax prepare --size {size}`)\n"
              f"  fine-tune from it: --config.model.name={source['backbone']} --config.model.pretrained={args.out} "
              f"--config.model.input={source['input']} --config.data.crop={size}")
        return 0
    variables = weights.from_torch(args.model, weights.load_state_dict(args.source), num_classes=args.num_classes)
    weights.save_variables(args.out, variables)
    print(f"{args.source} → {args.out} ({args.model}, {args.num_classes} classes); use it with "
          f"--config.model.name={args.model} --config.model.pretrained={args.out}")
    return 0


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated option value → its names ("none" or "" → none)."""
    return tuple(name.strip() for name in text.split(",") if name.strip() and name.strip() != "none")


def _bench(args) -> int:
    import jax

    from cxrjax.tools import bench

    options = bench.BenchOptions(
        models=_names(args.models), batch=args.batch, size=args.size, dtypes=_names(args.dtype), steps=args.steps,
        warmup=args.warmup, torch_modes=_names(args.torch), skip=frozenset(_names(args.skip)),
        data_dir=args.data_dir, shard_size=args.shard_size, input_images=args.input_images,
        input_batches=args.input_batches, input_threads=args.input_threads, input_workers=args.input_workers,
        prepare_images=args.prepare_images, prepare_source_size=args.prepare_source_size, profile_dir=args.profile)
    # Every option spelled out, defaults included, so the recorded command reproduces the run.
    command = " ".join(["cxrjax bench", *(f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
                                          if name not in ("command", "handler", "verbose") and value is not None)])
    cache_was_enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)  # compile times are reported, so always cold
    try:
        result = bench.run_benchmarks(options, command)
    finally:
        jax.config.update("jax_enable_compilation_cache", cache_was_enabled)
    _write_json(args.output, result)
    print(bench.format_table(result))
    _wrote(f"bench: the results in {args.output}" if args.output else None)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxrjax", description=__doc__.splitlines()[0],
        epilog="First try `cxrjax demo`: a synthetic release prepared, trained on and evaluated in a few minutes. "
               "`cxrjax train --help` lists every config field with its default.")
    parser.add_argument("--verbose", action="store_true",
                        help="show the details: every per-finding warning, library INFO logs, TFDS's own bars")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        """A subcommand whose one-line summary is also the description its own --help starts with."""
        return commands.add_parser(name, help=summary, description=summary)

    run_folder = "a training run's folder (the --workdir of `cxrjax train`): its config and checkpoints are read"
    checkpoint = "which checkpoint: best (highest validation mean AUC), latest, or a step number (default: best)"
    bootstrap = "patient-level resamples for 95%% CIs (default: 1000; 0: off)"
    demo = command("demo", "synthetic release → shards → training → test AUC table")
    demo.add_argument("--workdir", default="cxrjax_demo",
                      help="where everything goes: release/ (the synthetic images, CSVs and split lists), data/ (the "
                           "shards), run/ (checkpoints; the test report in run/eval/test/); a re-run reuses what is "
                           "there (default: cxrjax_demo)")
    demo.add_argument("--num-images", type=int, default=2000,
                      help="images of the synthetic release (default: 2000); only when the release is written, so a "
                           "re-run on the same --workdir keeps the release it has")
    demo.add_argument("--epochs", type=int, default=None,
                      help="training epochs (default: the demo config's num_epochs, cxrjax/configs/demo.py)")
    demo.set_defaults(handler=_demo)

    prepare = command("prepare", "NIH release → ArrayRecord shards (once per image size and label version)")
    prepare.add_argument("--source", required=True,
                         help="the release folder: the Data_Entry CSV of --labels, train_val_list.txt, test_list.txt "
                              "and the PNGs anywhere below it (images_0xx/images/ or images/)")
    prepare.add_argument("--data-dir", required=True,
                         help="where the shards go, in DATA_DIR/chestxray14/<size>[_labels2017]/<version>/, with "
                              "manifest.csv and prepare_report.json; train reads the same folder through "
                              "--config.data.data_dir=DATA_DIR")
    prepare.add_argument("--size", type=int, default=256,
                         help="the stored image side: every image is resized to SIZE x SIZE once, here (default: "
                              "256); a run reads the shards of its config.data.size, so a config other than 256 "
                              "needs --config.data.size=SIZE (and a config.data.crop no larger)")
    prepare.add_argument("--labels", choices=("v2020", "2017"), default="v2020",
                         help="which Data_Entry CSV labels the shards: v2020 = Data_Entry_2017_v2020.csv (the "
                              "release's current CSV; default), 2017 = Data_Entry_2017.csv (the original one); a run "
                              "reads the shards of its config.data.labels, so 2017 needs --config.data.labels=2017")
    prepare.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    prepare.set_defaults(handler=_prepare)

    command("train", "train --config experiments/X.py (installed: cxrjax:experiments/X.py) --workdir DIR "
                     "[--config.FIELD=VALUE ...]; train --help lists them")
    command("ablate", "ablate --config X.py --workdir DIR --loss bce --loss focal ... (one run each)")

    evaluate = command("eval", "evaluate a checkpoint (or an imported chest X-ray model) on a split: predictions.csv, "
                               "metrics.json, report.md, ROC/PR")
    evaluated = evaluate.add_mutually_exclusive_group(required=True)
    evaluated.add_argument("--workdir",
                           help=f"{run_folder}; results go to WORKDIR/eval/<split>[_tta-<mode>][_ensemble-<n>]/")
    evaluated.add_argument("--weights", metavar="FILE",
                           help="an imported chest X-ray model (`cxrjax import-weights --from torchxrayvision`) "
                                "before any training, as a baseline; needs --data-dir and --out")
    evaluate.add_argument("--out", default=None, metavar="DIR", help="with --weights: where to write the evaluation")
    evaluate.add_argument("--checkpoint", default="best", help=checkpoint)
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"),
                          help="a split of the run's protocol, config.data.protocol (default: test)")
    evaluate.add_argument("--bootstrap", type=int, default=1000, help=bootstrap)
    evaluate.add_argument("--tta", choices=("flip", "tencrop"), default=None,
                          help="test-time augmentation, probabilities averaged over the views: flip (the image and "
                               "its mirror) or tencrop (4 corner and centre crops, and their mirrors); default: none")
    evaluate.add_argument("--ensemble", nargs="+", default=(), metavar="WORKDIR",
                          help="average probabilities with these runs' (same data and split)")
    evaluate.add_argument("--data-dir", default=None,
                          help="where the shards are now (the --data-dir of `cxrjax prepare`), if they have moved "
                               "since training; default: the run's config.data.data_dir")
    _expert_arguments(evaluate)
    evaluate.set_defaults(handler=_eval)

    score = command("score", "metrics (AUCs, CIs) of any predictions CSV against the release's labels")
    score.add_argument("--predictions", required=True,
                       help="CSV with an 'Image Index' column and one probability column per finding, named "
                            "<Finding> or prob_<Finding> (e.g. an eval's predictions.csv)")
    score.add_argument("--labels", required=True,
                       help="the release's Data_Entry CSV to score against: Data_Entry_2017_v2020.csv or "
                            "Data_Entry_2017.csv")
    score.add_argument("--images", default=None,
                       help="score only the images of this list file (e.g. the release's test_list.txt)")
    score.add_argument("--output", default=None, help="write metrics.json here")
    score.add_argument("--bootstrap", type=int, default=1000, help=bootstrap)
    _expert_arguments(score)
    score.set_defaults(handler=_score)

    predict = command("predict", "probabilities for PNG/JPEG/DICOM files (and Grad-CAM overlays)")
    predict.add_argument("images", nargs="+", help="PNG, JPEG or DICOM files")
    model_source = predict.add_mutually_exclusive_group(required=True)
    model_source.add_argument("--workdir", help=run_folder)
    model_source.add_argument("--weights", metavar="FILE",
                              help="an imported chest X-ray model (`cxrjax import-weights --from torchxrayvision`), "
                                   "zero-shot: its own preprocessing and operating points")
    predict.add_argument("--checkpoint", default="best", help=checkpoint)
    predict.add_argument("--rule", choices=("youden", "f1", "torchxrayvision"), default=None,
                         help="which operating point marks a finding as present: chosen on validation (youden, "
                              "the default for a workdir; f1) or the imported model's own (the default with "
                              "--weights)")
    predict.add_argument("--json", action="store_true",
                         help="print JSON instead of a table: the thresholds used, each file's 14 probabilities and "
                              "the findings marked present, and the files that could not be read")
    predict.add_argument("--cam", default=None, metavar="OUT_DIR",
                         help="write Grad-CAM pictures here, by default of the findings at or above their "
                              "operating point")
    predict.add_argument("--findings", default=None, metavar="F1,F2",
                         help="with --cam: draw these findings (comma-separated) instead")
    predict.add_argument("--top-k", type=int, default=None, metavar="K",
                         help="with --cam: draw the K most probable findings instead")
    predict.add_argument("--boxes", default=None, metavar="CSV",
                         help="with --cam: the release's BBox_List_2017.csv; expert boxes of the file and finding are "
                              "drawn")
    predict.add_argument("--age", type=float, default=None, metavar="YEARS",
                         help="patient age for every file, for models that read it (fusion; else DICOM PatientAge)")
    predict.add_argument("--sex", choices=("M", "F"), default=None,
                         help="patient sex for every file, for models that read it (fusion; else DICOM PatientSex)")
    predict.add_argument("--view", choices=("PA", "AP"), default=None,
                         help="view position for every file, for models that read it (fusion; else DICOM "
                              "ViewPosition)")
    predict.set_defaults(handler=_predict)

    localize = command("localize", "Grad-CAM boxes vs expert boxes (IoU, IoBB; Wang 2017)")
    localize.add_argument("--workdir", required=True, help=f"{run_folder}, and its shards")
    localize.add_argument("--boxes", required=True, help="BBox_List_2017.csv of the release")
    localize.add_argument("--checkpoint", default="best", help=checkpoint)
    localize.add_argument("--split", default="test", choices=("train", "val", "test"),
                          help="the split of the run's protocol whose images with expert boxes are scored "
                               "(default: test)")
    localize.add_argument("--fraction", type=float, default=0.7,
                          help="where the min-max scaled CAM is cut to find the box, 0..1 (default: 0.7, close to "
                               "Wang 2017's 180 of 255)")
    localize.add_argument("--output", default=None, help="write the metrics as JSON here")
    localize.add_argument("--out", default=None, metavar="OUT_DIR",
                          help="write one picture per expert box here: the CAM, the expert box and the CAM's box")
    localize.set_defaults(handler=_localize)

    folds = command("folds", "mean ± sd per finding over k-fold runs (after `eval` on each)")
    folds.add_argument("workdirs", nargs="+", metavar="WORKDIR",
                       help="one run folder per fold, each evaluated by `cxrjax eval` first")
    folds.add_argument("--split", default="test",
                       help="which evaluation to aggregate: WORKDIR/eval/SPLIT/metrics.json of each run; test, val, "
                            "or an eval folder such as test_tta-flip (default: test)")
    folds.add_argument("--output", default=None, help="write the aggregate as JSON here")
    folds.set_defaults(handler=_folds)

    convert = command("import-weights", "torchvision/timm/torchxrayvision checkpoint → cxrjax variables (strict)")
    convert.add_argument("source", help=".pth/.pt (needs PyTorch), .safetensors or .npz state dict; with --from "
                         "torchxrayvision, the .pt file torchxrayvision downloads to its cache folder")
    convert.add_argument("--from", dest="source_kind", choices=("torchvision", "timm", "torchxrayvision"),
                         default="torchvision",
                         help="who made the file: torchvision/timm ImageNet weights (the default), or a "
                              "torchxrayvision chest X-ray model (needs the torchxrayvision package)")
    convert.add_argument("--model", required=True,
                         help="the cxrjax backbone the checkpoint is of, e.g. resnet18, resnet50, densenet121, "
                              "swin_base; with --from torchxrayvision its model name (e.g. densenet121-res224-all, "
                              "resnet50-res512-all)")
    convert.add_argument("--out", required=True,
                         help="output .msgpack, for train's --config.model.pretrained=OUT (or predict/eval "
                              "--weights OUT for a chest X-ray model)")
    convert.add_argument("--num-classes", type=int, default=14,
                         help="outputs of the model's head (default: 14); a checkpoint whose classifier has as many "
                              "is imported with it, any other (ImageNet's 1000) starts the head fresh")
    convert.set_defaults(handler=_import_weights)

    bench = command("bench", "training / eval / input / prepare images/s, beside PyTorch")
    bench.add_argument("--models", default="resnet50,densenet121,swin_base", help="comma-separated model names")
    bench.add_argument("--batch", type=int, default=128, help="global batch (training, eval and input pipeline)")
    bench.add_argument("--size", type=int, default=224, help="image side the models see")
    bench.add_argument("--dtype", default="bfloat16",
                       help="compute dtype(s): float32, bfloat16 or both (comma-separated)")
    bench.add_argument("--steps", type=int, default=20, help="timed steps, after the warm-up")
    bench.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation), default: 3")
    bench.add_argument("--torch", default="eager,compile", help="PyTorch reference modes: eager, compile, or none")
    bench.add_argument("--skip", default="", help="parts to leave out: train, eval, input, prepare (comma-separated)")
    bench.add_argument("--data-dir", default=None, help="existing shards for the input benchmark (default: synthetic)")
    bench.add_argument("--shard-size", type=int, default=256,
                       help="shard side the input benchmark reads and prepare writes")
    bench.add_argument("--input-images", type=int, default=512, help="synthetic images for the input benchmark")
    bench.add_argument("--input-batches", type=int, default=40, help="timed batches of the input benchmark")
    bench.add_argument("--input-threads", type=int, default=4, help="grain reader threads")
    bench.add_argument("--input-workers", type=int, default=0, help="grain worker processes (0: none)")
    bench.add_argument("--prepare-images", type=int, default=32, help="synthetic PNGs the prepare benchmark converts")
    bench.add_argument("--prepare-source-size", type=int, default=1024, help="their side (the release's is 1024)")
    bench.add_argument("--profile", default=None, metavar="DIR",
                       help="trace a few JAX training steps into DIR and report where their time goes")
    bench.add_argument("--output", default=None, help="write the results as JSON here")
    bench.set_defaults(handler=_bench)
    return parser


def _enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, on by default: a re-run (resume, eval, demo) skips recompiling."""
    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        cache_home = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
        jax.config.update("jax_compilation_cache_dir", os.path.join(cache_home, "cxrjax", "jax"))


def _set_verbosity(verbose: bool) -> None:
    """Warnings only, by default: one summary line where a detail repeats (per finding, per file), no TFDS banners or
    bars. `cxrjax --verbose COMMAND`: INFO lines of cxrjax (the details) and of the libraries (TFDS, orbax, grain)."""
    import logging as python_logging

    level = python_logging.INFO if verbose else python_logging.WARNING
    python_logging.basicConfig(format="%(levelname)s: %(message)s")  # only if nothing is configured yet
    python_logging.getLogger().setLevel(level)
    logging.set_verbosity(logging.INFO if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags.FLAGS.mark_as_parsed()  # grain and orbax read absl flags; a console script never parses them
    verbose = argv[:1] == ["--verbose"]  # before the command, for train and ablate as for the others
    argv = argv[1:] if verbose else argv
    _set_verbosity(verbose)
    _enable_compilation_cache()
    command = argv[0] if argv else ""
    try:
        if command in _CONFIG_COMMANDS:
            argv = [command, *_with_packaged_config(argv[1:])]
        if command in _CONFIG_COMMANDS and ({"--help", "-h"} & set(argv[1:])):
            print(_config_help(command, argv[1:]))
            return 0
        if command in ("train", "ablate"):  # absl-style config flags, not argparse
            with logging_redirect_tqdm():  # log lines above the progress bars, not through them
                return {"train": _train, "ablate": _ablate}[command]([f"cxrjax {command}", *argv[1:]])
        args = _parser().parse_args(argv)
        with logging_redirect_tqdm():
            return args.handler(args)
    # User-fixable: missing or unreadable files (any OSError: also permissions, a directory given for a file), a
    # missing optional dependency (torch to read a .pth), bad input, a diverged run.
    except (OSError, ImportError, ValueError, RuntimeError) as error:
        print(f"cxrjax {command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside training (training handles its own, `train.StopOnSignal`)
        print(f"cxrjax {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
