"""GhostNAS command line: search, confirm, show, export, plot, eval, profile, train.

Thin by design: it parses flags, calls the packages, and prints. Data goes to stdout, logs and
progress to stderr. Known errors (bad flags, config files, data paths, storage URLs, studies)
end in one line on stderr and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

log = logging.getLogger("ghostnas")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad flag or flag combination."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (its default prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("ghostnas").strip()  # "search" for a sub-command's parser
        raise UsageError(f"{command}: {message}" if command else message)


# -- flags ----------------------------------------------------------------------------------------


def _profile_flags(prof: argparse.ArgumentParser) -> None:
    prof.add_argument("--out", type=Path, required=True, help="the latency-model JSON file to write (DEVICE.json)")
    prof.add_argument("--space", type=Path, help="search space YAML (default: spaces/ghostnet.yaml)")
    prof.add_argument("--preset", choices=("cifar", "imagenet"), help="input layout (default cifar)")
    prof.add_argument("--input-size", type=int, help="input resolution (default: the preset's); a search must use the same")
    prof.add_argument("--num-classes", type=int, help="classes of the head (default 10)")
    prof.add_argument("--backend", choices=("torch", "onnxruntime"), help="time with PyTorch (default) or ONNX Runtime")
    prof.add_argument("--threads", type=int, help="CPU threads (default 1)")
    prof.add_argument("--device", choices=("cpu", "cuda"), help="where to time (default cpu)")
    prof.add_argument("--models", type=int, help="whole models to fit on, their blocks timed (default 20)")
    prof.add_argument("--holdout", type=int, help="held-out whole models the error is measured on (default 30)")
    prof.add_argument("--seed", type=int, help="seed for the sampled models (default 0)")
    prof.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default on)")


def build_parser(*, settings_flags: bool = True) -> argparse.ArgumentParser:
    """The parser. ``settings_flags=False`` leaves out the flags ``search`` and ``eval`` take from
    SearchSettings: deriving them imports the packages (seconds), which no other command needs."""
    parser = _Parser(prog="ghostnas", description="Hardware-aware multi-objective search over the GhostNet design space.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    search = commands.add_parser("search", help="run or resume a search")
    search.add_argument("--config", type=Path, help="YAML/JSON file holding any of these flags (flags override it)")

    confirm = commands.add_parser("confirm", help="retrain the front with more training seeds; the front is then ranked on mean accuracy")
    confirm.add_argument("--study", required=True, help="study name")
    confirm.add_argument("--storage", help="Optuna storage URL (default: runs/<study>/study.db)")
    confirm.add_argument("--runs", type=int, help="training runs per front member, the search's included (default 3, at most 100)")
    confirm.add_argument("--max-models", type=int, help="confirm at most this many models (default: until the whole front is)")
    confirm.add_argument("--device", choices=("cpu", "cuda"), help="where to train (default: the search's)")
    confirm.add_argument("--dataset", help="the search's data set, if it has moved (it must hold the same images)")
    confirm.add_argument("--data-root", type=Path, help="where torchvision datasets live, if moved")
    confirm.add_argument("--out", type=Path, help="directory for the confirmed front's files (default: the search's)")
    confirm.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default on)")

    for name, text in (("show", "print the Pareto front"), ("export", "write the Pareto front's configs"), ("plot", "write the Pareto plots as HTML")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--study", required=True, help="study name")
        sub.add_argument("--storage", help="Optuna storage URL (default: runs/<study>/study.db)")
        if name == "export":
            sub.add_argument("--format", choices=("csv", "md", "json", "py"), default="md")
            sub.add_argument("--out", type=Path, help="file to write (default: stdout)")
        if name == "plot":
            sub.add_argument("--out", type=Path, help="directory (default runs/<study>/plots)")

    evaluate = commands.add_parser("eval", help="score one config: params, FLOPs, latency, proxy accuracy")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--cfg", type=Path, help="config file: our JSON/YAML, the official table, or an export (json/py)")
    source.add_argument("--reference", help="ghostnet-0.35x, -0.5x, -0.75x, -1.0x, -1.3x; ghostnetv2-1.0x, -1.3x, -1.6x; ghostnetv3-1.0x")
    source.add_argument("--run", type=Path, help="a trained run directory (ghostnas train): top-1 on --dataset, latency, params, FLOPs")
    evaluate.add_argument("--preset", choices=("cifar", "imagenet"), help="for --reference: input layout (default imagenet)")
    evaluate.add_argument("--width", type=float, help="override the width multiplier")
    evaluate.add_argument("--input-size", type=int, help="override the input resolution")
    evaluate.add_argument("--num-classes", type=int, help="override the number of classes")
    evaluate.add_argument("--member", type=int, default=0, help="which front member of an export file (default 0)")
    evaluate.add_argument("--skip-accuracy", action="store_true", help="no proxy training")
    evaluate.add_argument("--skip-latency", action="store_true", help="no latency probe")
    evaluate.add_argument("--json", action="store_true", help="one JSON object on stdout")
    _profile_flags(commands.add_parser("profile", help="time the space's building blocks on this device and write a latency model"))
    _train_parser(commands)
    if settings_flags:
        from evaluators import MAX_SEED
        from search import EVALUATION_FLAGS, add_setting_flags

        add_setting_flags(search)
        evaluate.add_argument("--seed", type=int, default=0, help=f"training seed and data split (default 0, at most {MAX_SEED})")
        add_setting_flags(evaluate, names=EVALUATION_FLAGS)
    return parser


def _train_parser(commands: Any) -> None:
    train = commands.add_parser("train", help="train one model from scratch with the full recipe: weights, config, metrics, verified ONNX")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--study", help="choose the model from this study (with --trial, --member, --max-latency-ms or --max-flops)")
    source.add_argument("--cfg", type=Path, help="config file: our JSON/YAML, the official table, or an export (json/py)")
    source.add_argument("--reference", help="ghostnet-0.35x, -0.5x, -0.75x, -1.0x or -1.3x")
    choose = train.add_mutually_exclusive_group()
    choose.add_argument("--trial", type=int, help="the study's trial of this number")
    choose.add_argument("--member", type=int, help="this member of the study's Pareto front (0: most accurate), or of an export given with --cfg")
    choose.add_argument("--max-latency-ms", help="the most accurate front member within this latency")
    choose.add_argument("--max-flops", help="the most accurate front member within these FLOPs, e.g. 30M")
    train.add_argument("--storage", help="Optuna storage URL (default: runs/<study>/study.db)")
    train.add_argument("--preset", choices=("cifar", "imagenet"), help="for --reference: input layout (default cifar)")
    train.add_argument("--dataset", help="default: the study's, else digits; a name or an ImageFolder dir / .tar.gz")
    train.add_argument("--data-root", type=Path, help="where torchvision datasets live (read locally)")
    train.add_argument("--download", action="store_true", help="download a torchvision dataset into --data-root")
    train.add_argument("--subset", type=int, help="use this many images of the data set (stratified; default all)")
    train.add_argument("--val-fraction", type=float, default=0.1, help="stratified validation split (default 0.1)")
    train.add_argument("--epochs", type=int, help="training epochs (default 30)")
    train.add_argument("--batch-size", type=int, help="default 128")
    train.add_argument("--optimizer", choices=("sgd", "adamw"), help="default sgd (nesterov); adamw: give it --lr and --weight-decay")
    train.add_argument("--lr", type=float, help="peak learning rate (default 0.2)")
    train.add_argument("--weight-decay", type=float, help="on conv and linear weights only (default 5e-4)")
    train.add_argument("--ema", type=float, help="keep an EMA of the weights with this per-step decay, e.g. 0.999")
    train.add_argument("--input-size", type=int, help="train at this resolution (default: the config's)")
    train.add_argument("--device", choices=("cpu", "cuda"), help="default cpu")
    train.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    train.add_argument("--out", type=Path, help="run directory (default runs/<study>/train-<trial>, runs/train-<name>)")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default on)")


# -- commands -------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from evaluators import MAX_PROXY_EPOCHS, MAX_SEED, check_device
    from evaluators.calibration import calibrate
    from evaluators.evaluate import Evaluator
    from evaluators.latency import LatencyProbe, LatencySettings
    from evaluators.latency_model import LatencyModel
    from spaces import MAX_INPUT_SIZE, check_int, reference

    # Every setting is checked whether or not this run uses it.
    check_device(args.device or "cpu")
    check_int("--seed", args.seed, low=0, high=MAX_SEED)
    if args.threads is not None:
        check_int("--threads", args.threads, low=1, high=os.cpu_count() or 1, why="(the cores of this machine)")
    if args.epochs is not None:
        check_int("--epochs", args.epochs, low=1, high=MAX_PROXY_EPOCHS)
    for name in ("subset", "input_size", "num_classes"):  # bounded by the data set and the config schema
        if getattr(args, name) is not None:
            check_int(f"--{name.replace('_', '-')}", getattr(args, name), low=1)
    if args.train_input_size is not None:
        check_int("--train-input-size", args.train_input_size, low=8, high=MAX_INPUT_SIZE)

    if args.run:
        return _eval_run(args)
    if args.reference:
        config = reference(args.reference, preset=args.preset or "imagenet")
    else:
        config = _read_config(args.cfg, member=args.member)
        if args.preset:
            from spaces import apply_preset

            config = apply_preset(config, args.preset)
    changes = {k: v for k, v in (("width", args.width), ("input_size", args.input_size), ("num_classes", args.num_classes)) if v is not None}
    if changes:
        config = config.replace(**changes)

    probe = calibration = latency_model = data = train_settings = None
    device = args.device or "cpu"
    if not args.skip_accuracy:
        from evaluators.data import load_dataset, proxy_split
        from evaluators.training import TrainSettings

        dataset = load_dataset(args.dataset or "digits", data_root=args.data_root, download=bool(args.download))
        if args.num_classes is not None and args.num_classes != dataset.num_classes:
            raise UsageError(
                f"--num-classes {args.num_classes} differs from the {dataset.num_classes} classes of {dataset.name}, which "
                f"proxy training uses; drop --num-classes, or add --skip-accuracy to score the config alone"
            )
        data = proxy_split(dataset, seed=args.seed, subset=args.subset)
        config = config.replace(num_classes=len(dataset.classes))  # built for the data's classes
        train = {"device": device, "seed": args.seed}
        if args.epochs is not None:
            train["epochs"] = args.epochs
        if args.train_input_size is not None:
            train["input_size"] = args.train_input_size
        train_settings = _settings(TrainSettings, **train)
    if args.latency_model is not None and not args.skip_latency:
        latency_model = LatencyModel.load(args.latency_model)
        latency_model.check(preset="cifar" if config.stem_stride == 1 else "imagenet", input_size=config.input_size)
    elif not args.skip_latency:
        probe = LatencyProbe(settings=_settings(LatencySettings, device=device, threads=1 if args.threads is None else args.threads, backend=args.latency_backend or "torch"))
        calibration = calibrate(probe, config)  # the reference of config's layout, timed in this process
    evaluation = Evaluator(probe=probe, calibration=calibration, latency_model=latency_model, data=data, train_settings=train_settings).evaluate(config)
    result = {"config_id": evaluation.config.id, "params": int(evaluation.scores["params"]), "flops": int(evaluation.scores["flops"])}
    if evaluation.latency is not None:
        result["latency_ms"] = evaluation.scores["latency_ms"]  # calibrated on a reference timed in this process
        result["latency_raw_ms"] = evaluation.latency.median_ms
        result["latency"] = evaluation.latency.to_dict()
    if latency_model is not None:
        result["latency_ms"] = evaluation.scores["latency_ms"]  # predicted for the profiled device
        result["latency_model"] = latency_model.record()
    if evaluation.training is not None:
        result["accuracy"] = evaluation.training.accuracy
        result["training"] = dataclasses.asdict(evaluation.training)
    result["seconds"] = evaluation.seconds
    result["config"] = evaluation.config.to_dict()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_eval_table(result))
    return 0


def _read_config(path: Path, *, member: int) -> Any:
    """A config file (ours or the official table), or one member of an ``export`` (json/py)."""
    from results import read_exported
    from spaces import ConfigError

    configs = read_exported(path)
    if not 0 <= member < len(configs):
        raise ConfigError(f"{path} holds {len(configs)} configs; --member {member} is out of range")
    return configs[member]


def _eval_table(result: dict[str, Any]) -> str:
    rows = [("config", result["config_id"]), ("params", f"{result['params'] / 1e6:.3f} M"), ("FLOPs (MACs)", f"{result['flops'] / 1e6:.1f} M")]
    if "latency_model" in result:
        rows.append(("latency (predicted)", f"{result['latency_ms']:.3f} ms on {result['latency_model']['fingerprint'].get('cpu')}"))
    if "latency" in result:
        lat = result["latency"]
        rows.append(("latency (calibrated)", f"{result['latency_ms']:.3f} ms"))
        rows.append(("latency (raw median)", f"{lat['median_ms']:.3f} ms (p10 {lat['p10_ms']:.3f}, p90 {lat['p90_ms']:.3f}, {lat['runs']} runs{', UNSTABLE' if lat['unstable'] else ''})"))
        if lat.get("ratio_to_reference") is not None:
            rows.append(("latency / GhostNet 1.0x", f"{lat['ratio_to_reference']:.3f}"))
    if "accuracy" in result:
        rows.append(("proxy accuracy", f"{100 * result['accuracy']:.2f} %  ({result['training']['epochs_run']} epochs)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def cmd_train(args: argparse.Namespace) -> int:
    from evaluators.data import load_dataset
    from evaluators.deploy import train_and_export
    from evaluators.trainer import RunSettings, check_run_dir
    from spaces import MAX_INPUT_SIZE, check_int

    # Every flag is checked before the study is opened or the data read.
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
             "weight_decay": args.weight_decay, "ema_decay": args.ema}  # fmt: skip
    recipe = {k: v for k, v in flags.items() if v is not None}
    progress = args.progress if args.progress is not None else not args.quiet
    settings = _settings(RunSettings, **recipe, device=args.device or "cpu", seed=args.seed, progress=progress)
    if not 0 < args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be a number between 0 and 1 (both excluded), got {args.val_fraction!r}")
    for name, low, high in (("input_size", 8, MAX_INPUT_SIZE), ("subset", 1, None)):
        if getattr(args, name) is not None:
            check_int(f"--{name.replace('_', '-')}", getattr(args, name), low=low, high=high)
    config, source, about, dataset, data_root, out = _train_source(args)
    if args.input_size is not None:
        config = config.replace(input_size=args.input_size)
    check_run_dir(out)
    data = load_dataset(dataset, data_root=args.data_root or data_root, download=args.download)
    metrics = train_and_export(config, data, settings, out=out, source=source, about=about, val_fraction=args.val_fraction, subset=args.subset)
    onnx = metrics["onnx"]
    what = f"trial {source['trial']} of study {source['study']} ({source['how']})" if "study" in source else config.id
    log.info(
        "%s: val top-1 %.4f after %d epochs, %.0f s; ONNX verified (max |diff| %.2g, top-1 agrees on %d/%d)",
        what, metrics["val_accuracy"], metrics["epochs"], metrics["seconds"], onnx["max_abs_diff"], onnx["top1_agree"], onnx["images"],
    )
    for name in ("model.safetensors", "config.json", "metrics.json", "model.onnx"):
        print(out / name)
    return 0


def _train_source(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any], str, Path | None, Path]:
    """The config to train, where it came from (part of the run's identity), what the study
    says of it, the data set and data root (the study's unless given), and the run directory."""
    from spaces import GhostNetConfig, reference

    choice = {k: getattr(args, k) for k in ("trial", "member", "max_latency_ms", "max_flops") if getattr(args, k) is not None}
    if not args.study:
        if args.cfg is not None:
            choice.pop("member", None)  # with --cfg: that member of an export file
        if choice or args.storage:
            raise UsageError(f"train: --{next(iter(choice or {'storage': 0})).replace('_', '-')} needs --study")
        if args.reference:
            config = reference(args.reference, preset=args.preset or "cifar")
            return config, {"reference": args.reference, "preset": args.preset or "cifar"}, {}, args.dataset or "digits", None, args.out or Path("runs") / f"train-{args.reference}"
        config = _read_config(args.cfg, member=args.member or 0)
        return config, {"cfg": str(args.cfg), "member": args.member or 0, "config_id": config.id}, {}, args.dataset or "digits", None, args.out or Path("runs") / f"train-{config.id}"
    if not choice:
        raise UsageError("train: --study needs one of --trial, --member, --max-latency-ms, --max-flops")
    from results import select_model
    from search import parse_count

    for key in ("max_latency_ms", "max_flops"):
        if key in choice:
            choice[key] = parse_count(choice[key], name=f"--{key.replace('_', '-')}")
    chosen = select_model(_open_study(args.storage, args.study), **choice)
    config = GhostNetConfig.from_dict(chosen.config)
    source = {"study": args.study, "trial": chosen.number, "how": chosen.how}
    about = {"study_scores": chosen.scores, "accuracy_runs": chosen.accuracy_runs}
    recorded = chosen.settings
    root = recorded.get("data_root")
    return (
        config, source, about, args.dataset or recorded.get("dataset") or "digits", Path(root) if root else None,
        args.out or Path("runs") / args.study / f"train-{chosen.number}",
    )  # fmt: skip


def _eval_run(args: argparse.Namespace) -> int:
    """``eval --run DIR``: the trained model's top-1 on --dataset, its latency (PyTorch and ONNX
    Runtime, each calibrated as the search does: its ratio to GhostNet 1.0x times that reference's
    latency timed in this process, the raw median beside it), params and FLOPs."""
    from evaluators.calibration import calibrate
    from evaluators.deploy import accuracy_on, load_run
    from evaluators.flops import count_cost
    from evaluators.latency import LatencyProbe, LatencySettings

    run = load_run(args.run)
    config = run.config
    cost = count_cost(config)
    result: dict[str, Any] = {"run": str(args.run), "config_id": config.id, "params": cost.params, "flops": cost.flops}
    result["val_accuracy"] = run.metrics.get("val_accuracy")
    if args.dataset:
        from evaluators.data import load_dataset

        data = load_dataset(args.dataset, data_root=args.data_root, download=bool(args.download))
        result["dataset"] = {"name": data.name, "images": len(data), "accuracy": accuracy_on(run, data)}
    if not args.skip_latency:
        from spaces import ConfigError, reference

        try:  # the probe times GhostNet 1.0x beside the model; at a small input it may not fit
            reference("ghostnet-1.0x", preset="cifar" if config.stem_stride == 1 else "imagenet", input_size=config.input_size)
            beside = True
        except ConfigError:
            log.info("GhostNet 1.0x cannot run at %d px with this stem: latency without the reference ratio", config.input_size)
            beside = False
        for backend in ("torch", "onnxruntime"):
            probe = LatencyProbe(settings=_settings(LatencySettings, device="cpu", threads=args.threads or 1, backend=backend, reference=beside, **({} if beside else {"memory_format": "channels_last"})))
            latency = calibrate(probe, config).apply(probe.measure(config)) if beside else probe.measure(config)
            # As `eval --json` reports a config: latency_ms calibrated (None without the reference), the raw median beside it.
            result[f"latency_{backend}"] = {"latency_ms": latency.calibrated_ms, "latency_raw_ms": latency.median_ms, **latency.to_dict()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = [("run", result["run"]), ("config", config.id), ("params", f"{cost.params / 1e6:.3f} M"), ("FLOPs (MACs)", f"{cost.flops / 1e6:.2f} M")]
    if result["val_accuracy"] is not None:
        rows.append(("validation top-1 (held-out split)", f"{100 * result['val_accuracy']:.2f} %"))
    if "dataset" in result:
        rows.append((f"top-1 on {data.name}", f"{100 * result['dataset']['accuracy']:.2f} %  ({len(data)} images)"))
    for backend, name in (("torch", "PyTorch"), ("onnxruntime", "ONNX Runtime")):
        if f"latency_{backend}" in result:
            lat = result[f"latency_{backend}"]
            if lat["latency_ms"] is not None:
                how = f"{lat['ratio_to_reference']:.3f}x GhostNet 1.0x at {lat['calibration_reference_ms']:.3f} ms"
                rows.append((f"latency, {name} (calibrated)", f"{lat['latency_ms']:.3f} ms ({how})"))
            rows.append((f"latency, {name} (raw median)", f"{lat['median_ms']:.3f} ms (p10 {lat['p10_ms']:.3f}, p90 {lat['p90_ms']:.3f}, {lat['runs']} runs)"))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from search import SearchSettings, mask_url, run_search

    values = SearchSettings.from_file(args.config) if args.config else {}
    flags = {field.name for field in dataclasses.fields(SearchSettings)}
    values.update({k: v for k, v in vars(args).items() if k in flags and v is not None})
    if args.quiet and "progress" not in values:
        values["progress"] = False
    settings = _settings(SearchSettings, **values)
    summary = run_search(settings)
    log.info("%d models trained, %d samples rejected by a limit, %d failed, in %.0f s", summary.finished, summary.rejected, summary.failed, summary.seconds)
    if summary.prefiltered:
        log.info("%d candidates scored by the prefilter and not trained", summary.prefiltered)
    if "accuracy" in settings.objectives:
        where = f" --storage {mask_url(settings.storage_url)}" if settings.storage or settings.out else ""
        log.info("accuracies are single proxy runs: `ghostnas confirm --study %s%s` retrains the front with more seeds", settings.study, where)
    paths = _write_outputs(settings.storage_url, settings.study, settings.out_dir)
    for path in paths:
        print(path)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from evaluators.latency import LatencyProbe, LatencySettings
    from evaluators.profile import ProfileSettings, profile
    from spaces import check_writable_target, load_space, write_atomic

    keys = ("preset", "input_size", "num_classes", "backend", "threads", "device", "models", "holdout", "seed", "progress")
    values = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.quiet and "progress" not in values:
        values["progress"] = False
    settings = _settings(ProfileSettings, **values)
    # No CUDA device, no onnxruntime: one line now, not a traceback after the calibration.
    _settings(LatencyProbe, settings=LatencySettings(device=settings.device, backend=settings.backend, threads=settings.threads))
    space = load_space(args.space)
    if not args.out.parent.is_dir():  # before minutes of timing, not after
        raise UsageError(f"profile: cannot write {args.out}: {args.out.parent} is not a directory")
    check_writable_target(args.out)  # a device or a FIFO: refused now, not after the timing
    data = profile(settings, space)
    write_atomic(args.out, json.dumps(data, indent=1))
    e = data["error"]
    log.info(
        "profiled %d blocks and %d models in %.0f s; on %d held-out models %.0f %% within +-10 %%, median error %.1f %%, Kendall %s",
        len(data["units"]), len(data["train_models"]), data["profile_seconds"], e["models"], 100 * e["within_10pct"],
        100 * e["median_abs_rel"], "n/a" if e["kendall"] is None else f"{e['kendall']:.3f}",
    )  # fmt: skip
    print(args.out)
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from search import ConfirmSettings, confirm_study

    values = {k: v for k, v in vars(args).items() if k in {"study", "storage", "runs", "max_models", "device", "dataset", "data_root", "out", "progress"} and v is not None}
    if args.quiet and "progress" not in values:
        values["progress"] = False
    settings = _settings(ConfirmSettings, **values)
    summary = confirm_study(settings)
    log.info("%d runs trained (%d failed) in %.0f s; %d models confirmed", summary.trained, summary.failed, summary.seconds, summary.confirmed)
    if not summary.complete and not summary.interrupted:
        log.warning("the front still holds unconfirmed models (--max-models reached); run again with a larger limit")
    for path in _write_outputs(settings.storage_url, settings.study, summary.out_dir):
        print(path)
    return EXIT_INTERRUPTED if summary.interrupted else 0


def _write_outputs(storage: str, study_name: str, out_dir: Path) -> list[Path]:
    """pareto.csv, pareto.md, best.json, best.py and plots/index.html beside the study."""
    from results import export, load_trials, pareto_front, write_plots

    study = _open_study(storage, study_name)
    frame = load_trials(study)
    if frame.attrs["signal"]:
        log.warning("%s", frame.attrs["signal"])
    front = pareto_front(frame)
    paths = [export(front, fmt=fmt, path=out_dir / name) for fmt, name in (("csv", "pareto.csv"), ("md", "pareto.md"), ("json", "best.json"), ("py", "best.py"))]
    paths.append(write_plots(frame, out_dir / "plots"))
    return paths


def _open_study(storage: str | None, study_name: str) -> Any:
    from results import open_study
    from search import default_storage_url, open_storage

    url = storage or default_storage_url(Path("runs") / study_name)
    return open_study(storage=open_storage(url, read_only=True), study_name=study_name)


def cmd_show(args: argparse.Namespace) -> int:
    from results import load_trials, pareto_front, render

    frame = load_trials(_open_study(args.storage, args.study))
    print(render(pareto_front(frame), fmt="md"))
    print(_trial_states(frame))
    return 0


def _trial_states(frame: Any) -> str:
    """How many trials are in each state, and why each failed trial failed (markdown)."""
    counts = frame["state"].value_counts()
    states = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
    lines = [f"{len(frame)} trial(s): " + (", ".join(f"{counts[s]} {name}" for s, name in states.items() if counts.get(s, 0)) or "none")]
    failed = frame[frame["state"] == "FAIL"]
    if len(failed):
        lines += ["", "| failed trial | reason |", "|---:|---|"]
        for number, reason in zip(failed["number"], failed["failed"]):
            text = "unknown" if not isinstance(reason, str) else reason.replace("|", "\\|")
            lines.append(f"| {number} | {text} |")
    return "\n".join(lines) + "\n"


def cmd_export(args: argparse.Namespace) -> int:
    from results import export, load_trials, pareto_front, render

    front = pareto_front(load_trials(_open_study(args.storage, args.study)))
    if args.out is None:
        _stdout().write(render(front, fmt=args.format))
    else:
        print(export(front, fmt=args.format, path=args.out))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from results import load_trials, write_plots

    frame = load_trials(_open_study(args.storage, args.study))
    print(write_plots(frame, args.out or Path("runs") / args.study / "plots"))
    return 0


# -- plumbing -------------------------------------------------------------------------------------


def _settings(cls: type, **values: Any) -> Any:
    """Build a settings dataclass; its validation errors are the user's, so they become UsageError."""
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _stdout() -> Any:
    """Standard output, or a one-line error if it is closed (``>&-``): data has nowhere to go."""
    if sys.stdout is None or sys.stdout.closed:
        raise UsageError("standard output is closed: nothing can be printed (give --out FILE, or keep stdout open)")
    return sys.stdout


def _known_errors() -> tuple[type[BaseException], ...]:
    from spaces import GhostNASError  # the root of ConfigError, DataError, LatencyModelError, RunError, SearchError, ResultsError

    return (UsageError, GhostNASError)


# Flags whose value may look like an option to argparse (``--max-flops -5M``): joined to their
# flag as ``--max-flops=-5M``, so that the check of the value says what is wrong with it.
_VALUE_FLAGS = re.compile(r"--(max-flops|max-params|max-latency-ms|seed|trials|timeout|workers|threads|epochs|subset|input-size|num-classes|width|runs|max-models|member|rung-ratio|val-fraction|trial|batch-size|lr|weight-decay|ema|models|holdout)")


def _join_negative_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    for arg in argv:
        if out and _VALUE_FLAGS.fullmatch(out[-1]) and re.fullmatch(r"-[0-9.].*", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


COMMANDS = {"search": cmd_search, "confirm": cmd_confirm, "show": cmd_show, "export": cmd_export, "plot": cmd_plot, "eval": cmd_eval, "profile": cmd_profile, "train": cmd_train}


def main(argv: list[str] | None = None) -> int:
    argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    debug = "--debug" in argv
    try:
        command = next((arg for arg in argv if not arg.startswith("-")), None)
        args = build_parser(settings_flags=command in ("search", "eval")).parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
        _stdout()  # every command prints its results there: refuse before any work
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("ghostnas: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (| head): not an error worth a traceback
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter shutdown quiet
        return 0
    except Exception as exc:
        # A flag error needs none of the packages: decide without importing torch (seconds).
        if debug or not (isinstance(exc, UsageError) or isinstance(exc, _known_errors())):
            raise
        print(f"ghostnas: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
