"""breast-cancer: 30 Wisconsin features, scikit-learn pipeline chosen by CV, skl2onnx export."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from training.calibration import ServedOutput
from training.candidate import Candidate, TrainOptions
from training.gate import PromotionGate
from training.metrics import log_parity, parity_figures
from training.ood_reference import tabular_reference
from training.operating_point import fit_serving

log = logging.getLogger("training")

MODEL_ID = "breast-cancer"
# sklearn's target: 0 = malignant, 1 = benign; the ONNX output columns follow it.
CLASSES = ["malignant", "benign"]
MALIGNANT = 0
INPUT_NAME = "features"
PROBABILITY_OUTPUT = "probabilities"
OUTPUTS = {"probabilities": PROBABILITY_OUTPUT, "probability_format": "probabilities"}
# Missing a malignancy costs far more than a false alarm: gate on its recall, and on
# how much that recall varies across folds.
DEFAULT_GATE = PromotionGate(minimums={"test_recall": 0.95}, maximums={"cv_recall_std": 0.05})
TEST_SIZE = 0.2
# Operating point: the malignant threshold reaching this recall on out-of-fold predictions of
# repeated stratified CV on the training split (smoke runs: fewer repeats and folds).
TARGET_RECALL = 0.99
CV_REPEATS, SMOKE_CV_REPEATS = 5, 2


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    sha256: str


def load_wisconsin() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    X = np.ascontiguousarray(data.data, dtype=np.float64)
    y = np.ascontiguousarray(data.target, dtype=np.int64)
    digest = hashlib.sha256()
    digest.update("\n".join(data.feature_names).encode())
    digest.update(X.tobytes())
    digest.update(y.tobytes())
    return Dataset(X=X, y=y, feature_names=[str(n) for n in data.feature_names], sha256=digest.hexdigest())


def candidate_pipelines(seed: int) -> dict:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic_regression": Pipeline(
            [
                ("scaler", StandardScaler()),
                ("classifier", LogisticRegression(C=1.0, max_iter=5000, random_state=seed)),
            ]
        ),
        "random_forest": Pipeline(
            [
                ("scaler", StandardScaler()),
                ("classifier", RandomForestClassifier(n_estimators=100, max_depth=None, random_state=seed, n_jobs=1)),
            ]
        ),
    }


def cross_validate_candidates(X, y, k_folds: int, seed: int) -> dict[str, dict[str, float]]:
    from sklearn.metrics import f1_score, make_scorer, precision_score, recall_score
    from sklearn.model_selection import StratifiedKFold, cross_validate

    scoring = {
        "accuracy": "accuracy",
        "precision": make_scorer(precision_score, pos_label=MALIGNANT, zero_division=0),
        "recall": make_scorer(recall_score, pos_label=MALIGNANT),
        "f1": make_scorer(f1_score, pos_label=MALIGNANT),
    }
    folds = StratifiedKFold(n_splits=k_folds, shuffle=True, random_state=seed)
    results = {}
    for name, pipeline in candidate_pipelines(seed).items():
        scores = cross_validate(pipeline, X, y, cv=folds, scoring=scoring, n_jobs=1)
        summary = {}
        for metric in scoring:
            values = scores[f"test_{metric}"]
            summary[f"cv_{metric}_mean"] = float(np.mean(values))
            summary[f"cv_{metric}_std"] = float(np.std(values))
        results[name] = summary
        log.info(
            "  CV %-20s recall %.4f ± %.4f   accuracy %.4f ± %.4f",
            name,
            summary["cv_recall_mean"],
            summary["cv_recall_std"],
            summary["cv_accuracy_mean"],
            summary["cv_accuracy_std"],
        )
    return results


def choose(cv_results: dict[str, dict[str, float]]) -> str:
    """Highest CV recall of the malignant class; lower recall std breaks ties."""
    return max(cv_results, key=lambda n: (round(cv_results[n]["cv_recall_mean"], 6), -cv_results[n]["cv_recall_std"]))


def test_metrics(y_true, proba, operating_point=None) -> dict[str, float]:
    """Labels as serving decides them: at the operating point when given, else the most probable class."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    from med_classifier.domain.decision import decide

    y_pred = decide(proba, CLASSES, operating_point)
    return {
        "test_accuracy": float(accuracy_score(y_true, y_pred)),
        "test_precision": float(precision_score(y_true, y_pred, pos_label=MALIGNANT, zero_division=0)),
        "test_recall": float(recall_score(y_true, y_pred, pos_label=MALIGNANT)),
        "test_f1": float(f1_score(y_true, y_pred, pos_label=MALIGNANT)),
        "test_roc_auc": float(roc_auc_score((y_true == MALIGNANT).astype(int), proba[:, MALIGNANT])),
    }


def export_onnx(pipeline, n_features: int) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onnx_model = convert_sklearn(
        pipeline,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        # Plain probability tensor instead of a list of {class: p} maps: cheaper to serve.
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
    )
    outputs = [o.name for o in onnx_model.graph.output]
    if PROBABILITY_OUTPUT not in outputs:  # skl2onnx's naming is part of our contract
        raise RuntimeError(f"skl2onnx produced outputs {outputs}, expected {PROBABILITY_OUTPUT!r}")
    return onnx_model.SerializeToString()


def parity(pipeline, onnx_bytes: bytes, X: np.ndarray, served: ServedOutput | None = None) -> dict[str, float | int]:
    """Native vs ONNX Runtime on every row: identical labels, max |Δp| (with `served`: of the
    calibrated probabilities and the labels decided at the operating point)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    X32 = X.astype(np.float32)
    (onnx_proba,) = session.run([PROBABILITY_OUTPUT], {INPUT_NAME: X32})
    return parity_figures(pipeline.predict_proba(X32), onnx_proba, served)


def out_of_fold_proba(pipeline, X, y, k_folds: int, repeats: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold class probabilities of `repeats` differently shuffled stratified k-fold CVs,
    stacked (repeats * len(y) rows), and their labels."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    proba = [
        cross_val_predict(
            pipeline,
            X,
            y,
            cv=StratifiedKFold(n_splits=k_folds, shuffle=True, random_state=seed + repeat),
            method="predict_proba",
            n_jobs=1,
        )
        for repeat in range(repeats)
    ]
    return np.concatenate(proba), np.tile(y, repeats)


def train(options: TrainOptions = TrainOptions()) -> Candidate:
    import skl2onnx
    import sklearn

    data = load_wisconsin()
    X_train, X_test, y_train, y_test = _split(data, options.smoke, options.seed)
    k_folds = min(options.k_folds, 3) if options.smoke else options.k_folds
    log.info(
        "data: Wisconsin breast cancer, %d train / %d test rows, %d features (sha256 %s…)",
        len(y_train),
        len(y_test),
        data.X.shape[1],
        data.sha256[:12],
    )
    log.info("cross-validating %d-fold…", k_folds)
    cv = cross_validate_candidates(X_train, y_train, k_folds, options.seed)
    chosen = choose(cv)
    log.info("chosen by CV malignant recall: %s", chosen)
    pipeline = candidate_pipelines(options.seed)[chosen].fit(X_train, y_train)
    serving = _fit_serving(chosen, pipeline, X_train, y_train, X_test, y_test, k_folds, options)
    proba = serving.test_proba
    metrics = {**cv[chosen], **test_metrics(y_test, proba, serving.served.operating_point)}
    log_test_metrics(metrics)
    onnx_bytes = export_onnx(pipeline, data.X.shape[1])
    check = parity(pipeline, onnx_bytes, data.X, serving.served)
    log_parity(check)
    return Candidate(
        model_id=MODEL_ID,
        description="Wisconsin diagnostic breast cancer (30 features): malignant vs benign.",
        task="binary",
        classes=CLASSES,
        input_spec=tabular_input(INPUT_NAME, data.feature_names, data.X[0], X_train),
        outputs=OUTPUTS,
        onnx=onnx_bytes,
        metrics=metrics,
        parity=check,
        parity_limits={"max_abs_prob_diff": 1e-5, "label_mismatches": 0},
        estimator=chosen,
        params=_params(options, k_folds, chosen, pipeline.steps[-1][1]),
        framework={"scikit-learn": sklearn.__version__},
        converter={"skl2onnx": skl2onnx.__version__},
        training_data=training_data(data, len(y_train), len(y_test)),
        # native_model: the fitted pipeline, in memory only (parity tests compare against it)
        evaluation={"y_true": y_test, "proba": proba, "cv": cv, "native_model": pipeline},
        ood=tabular_reference(data.feature_names, CLASSES, X_train, y_train, X_test, options.seed),
        **serving.candidate_fields(),
    )


def _fit_serving(chosen: str, pipeline, X_train, y_train, X_test, y_test, k_folds: int, options: TrainOptions):
    """Calibration and operating point fitted on repeated stratified CV's out-of-fold predictions."""
    repeats = SMOKE_CV_REPEATS if options.smoke else CV_REPEATS
    log.info("calibration and operating point: %d x %d-fold stratified CV, out-of-fold…", repeats, k_folds)
    oof_proba, oof_y = out_of_fold_proba(
        candidate_pipelines(options.seed)[chosen], X_train, y_train, k_folds, repeats, options.seed
    )
    return fit_serving(
        classes=CLASSES,
        outputs=OUTPUTS,
        fit_proba=oof_proba,
        fit_y=oof_y,
        fitted_on=f"{repeats} x {k_folds}-fold stratified CV on the training split, out-of-fold",
        test_proba=pipeline.predict_proba(X_test),
        y_test=y_test,
        target=(CLASSES[MALIGNANT], options.target_recall or TARGET_RECALL),
    )


def _split(data: Dataset, smoke: bool, seed: int):
    """Stratified train/test split; smoke mode keeps a stratified fifth of the training split."""
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        data.X, data.y, test_size=TEST_SIZE, stratify=data.y, random_state=seed
    )
    if smoke:
        X_train, _, y_train, _ = train_test_split(X_train, y_train, train_size=0.2, stratify=y_train, random_state=seed)
    return X_train, X_test, y_train, y_test


def _params(options: TrainOptions, k_folds: int, chosen: str, classifier) -> dict:
    return {
        "model_type": chosen,
        "k_folds": k_folds,
        "smoke": options.smoke,
        "random_state": options.seed,
        "test_size": TEST_SIZE,
        "target_recall": options.target_recall or TARGET_RECALL,
        "cv_repeats": SMOKE_CV_REPEATS if options.smoke else CV_REPEATS,
        **{
            f"clf_{k}": v
            for k, v in classifier.get_params().items()
            if isinstance(v, (int, float, str, bool)) or v is None
        },
    }


# Shared with breast-cancer-lite: the same data set, log lines and manifest fields.


def tabular_input(input_name: str, feature_names: list[str], example_row: np.ndarray, X_train: np.ndarray) -> dict:
    return {
        "kind": "tabular",
        "feature_names": feature_names,
        "input_name": input_name,
        "example": [float(v) for v in example_row],
        "baseline": [float(v) for v in X_train.mean(axis=0)],  # explanations' reference row
    }


def log_test_metrics(metrics: dict[str, float]) -> None:
    log.info(
        "test: accuracy %.4f  precision %.4f  recall %.4f  f1 %.4f  roc_auc %.4f",
        metrics["test_accuracy"],
        metrics["test_precision"],
        metrics["test_recall"],
        metrics["test_f1"],
        metrics["test_roc_auc"],
    )


def training_data(data: Dataset, n_train: int, n_test: int) -> dict:
    return {
        "name": "wisconsin-diagnostic-breast-cancer",
        "source": "sklearn.datasets.load_breast_cancer",
        "sha256": data.sha256,
        "n_train": int(n_train),
        "n_test": int(n_test),
        "synthetic": False,
    }
