"""python -m training — train, export, gate and publish a model.

NOT FOR CLINICAL USE: models trained here are for research and education.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

TRAINERS = ("breast-cancer",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train a model, export it to ONNX, check parity, log to MLflow, and publish it to the "
                    "S3 model store if it passes the promotion gate. NOT FOR CLINICAL USE.",
    )
    parser.add_argument("model", choices=TRAINERS, help="model to train")
    parser.add_argument("--k-folds", type=int, default=10, help="cross-validation folds (default: 10)")
    parser.add_argument("--smoke", action="store_true",
                        help="fast run on a fifth of the training data with at most 3 folds (tests, CI)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--min-recall", type=float, default=0.95,
                        help="gate: minimum test recall of the malignant class (default: 0.95)")
    parser.add_argument("--max-recall-std", type=float, default=0.05,
                        help="gate: maximum CV recall standard deviation (default: 0.05)")
    parser.add_argument("--bucket", default=os.environ.get("MODELS_BUCKET"),
                        help="models bucket to publish to (default: $MODELS_BUCKET); S3 endpoint from "
                             "$AWS_ENDPOINT_URL")
    parser.add_argument("--no-publish", action="store_true", help="train, gate and log only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.k_folds < 2:
        build_parser().error("--k-folds must be at least 2")
    if not args.no_publish and not args.bucket:
        build_parser().error("no bucket: pass --bucket, set MODELS_BUCKET, or use --no-publish")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s  %(message)s", datefmt="%H:%M:%S")
    log = logging.getLogger("training")
    started = time.perf_counter()

    from med_classifier.model_store import ModelStore
    from training import breast_cancer
    from training.gate import PromotionGate
    from training.pipeline import ParityError, finish

    log.info("training %s%s — NOT FOR CLINICAL USE", args.model, " (smoke)" if args.smoke else "")
    candidate = breast_cancer.train(k_folds=args.k_folds, smoke=args.smoke, seed=args.seed)
    gate = PromotionGate(min_recall=args.min_recall, max_recall_std=args.max_recall_std)
    store = None if args.no_publish else ModelStore(args.bucket)
    try:
        outcome = finish(candidate, gate, store)
    except ParityError as exc:
        log.error("FAILED: %s", exc)
        return 3
    elapsed = time.perf_counter() - started
    if outcome.gate.passed:
        log.info("gate PASSED  version %s  (%s)", outcome.version,
                 "published" if outcome.published else "not published: --no-publish")
    else:
        log.warning("gate REJECTED version %s: %s", outcome.version, "; ".join(outcome.gate.reasons))
    log.info("MLflow run %s; done in %.1f s", outcome.mlflow_run_id, elapsed)
    return 0 if outcome.gate.passed else 2


if __name__ == "__main__":
    sys.exit(main())
