"""python -m training — train, export, gate and publish a model.

NOT FOR CLINICAL USE: models trained here are for research and education.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from training.candidate import TrainOptions
from training.gate import PromotionGate
from training.settings import training_settings
from training.trainers import TRAINERS


def _threshold(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected METRIC=VALUE, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train a model, export it to ONNX, check parity, log to MLflow, and publish it to the "
        "S3 model store if it passes the promotion gate. NOT FOR CLINICAL USE.",
    )
    parser.add_argument("model", choices=tuple(TRAINERS), help="model to train")
    _add_training_options(parser)
    _add_gate_options(parser)
    parser.add_argument(
        "--bucket",
        default=training_settings().models_bucket or None,
        help="models bucket to publish to (default: $MODELS_BUCKET); S3 endpoint from $AWS_ENDPOINT_URL",
    )
    parser.add_argument("--no-publish", action="store_true", help="train, gate and log only")
    return parser


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke", action="store_true", help="small, fast run (tests, CI): less data, fewer folds and epochs"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--k-folds", type=int, default=10, help="cross-validation folds, tabular models (default: 10)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the public data set in its published layout (HAM10000: HAM10000_metadata.csv + "
        "image folders; chest CT: one folder per class, optional train/valid/test). "
        "Default: a deterministic synthetic set generated under .local/data",
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs, image/Keras models")
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch size, image/Keras models")
    parser.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="local weights file to start from (never downloaded); default: from scratch",
    )
    parser.add_argument("--no-quantize", action="store_true", help="skip the static INT8 variant (image models)")
    parser.add_argument(
        "--target-recall",
        type=float,
        default=None,
        help="binary models: recall of the positive class (malignant, adenocarcinoma) the decision threshold "
        "must reach on cross-validation (default: breast-cancer 0.99, breast-cancer-lite 0.95, chest-ct 0.95)",
    )


def _add_gate_options(parser: argparse.ArgumentParser) -> None:
    for flag, dest, lowest_or_highest in (("--min", "minimums", "lowest"), ("--max", "maximums", "highest")):
        parser.add_argument(
            flag,
            dest=dest,
            type=_threshold,
            action="append",
            default=[],
            metavar="METRIC=VALUE",
            help=f"gate: {lowest_or_highest} acceptable value of a metric (repeatable)",
        )
    parser.add_argument(
        "--min-recall",
        type=float,
        default=None,
        help="gate: minimum malignant test recall, breast-cancer models (same as --min test_recall=X)",
    )
    parser.add_argument(
        "--max-recall-std",
        type=float,
        default=None,
        help="gate: maximum CV recall std, breast-cancer models (same as --max cv_recall_std=X)",
    )


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error (status 2) on values argparse's types cannot rule out."""
    if args.k_folds < 2:
        parser.error("--k-folds must be at least 2")
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a directory")
    if args.target_recall is not None and not 0.0 < args.target_recall <= 1.0:
        parser.error("--target-recall must be in (0, 1]")
    if args.pretrained is not None and not args.pretrained.is_file():
        parser.error(f"--pretrained {args.pretrained} is not a file")
    if not args.no_publish and not args.bucket:
        parser.error("no bucket: pass --bucket, set MODELS_BUCKET, or use --no-publish")


def _gate(default: PromotionGate, args: argparse.Namespace) -> PromotionGate:
    """The model's gate with --min/--max (and the breast-cancer shorthands) applied."""
    minimums = dict(args.minimums)
    maximums = dict(args.maximums)
    if args.min_recall is not None:
        minimums["test_recall"] = args.min_recall
    if args.max_recall_std is not None:
        maximums["cv_recall_std"] = args.max_recall_std
    return default.with_overrides(minimums, maximums)


def _options(args: argparse.Namespace) -> TrainOptions:
    return TrainOptions(
        smoke=args.smoke,
        seed=args.seed,
        k_folds=args.k_folds,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        pretrained=args.pretrained,
        quantize=not args.no_quantize,
        target_recall=args.target_recall,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s  %(message)s", datefmt="%H:%M:%S")
    log = logging.getLogger("training")
    started = time.perf_counter()

    from med_classifier.adapters.model_store import ModelStore
    from training.pipeline import ParityError, finish
    from training.trainers import trainer

    module = trainer(args.model)
    gate = _gate(module.DEFAULT_GATE, args)
    options = _options(args)
    log.info("training %s%s — NOT FOR CLINICAL USE", args.model, " (smoke)" if args.smoke else "")
    candidate = module.train(options)
    store = None if args.no_publish else ModelStore(args.bucket, endpoint_url=training_settings().endpoint_url)
    try:
        outcome = finish(candidate, gate, store, quantize=options.quantize)
    except ParityError as exc:
        log.error("FAILED: %s", exc)
        return 3
    if outcome.gate.passed:
        log.info(
            "gate PASSED  version %s  (%s)",
            outcome.version,
            "published" if outcome.published else "not published: --no-publish",
        )
    else:
        log.warning("gate REJECTED version %s: %s", outcome.version, "; ".join(outcome.gate.reasons))
    log.info("MLflow run %s; done in %.1f s", outcome.mlflow_run_id, time.perf_counter() - started)
    return 0 if outcome.gate.passed else 2


if __name__ == "__main__":
    sys.exit(main())
