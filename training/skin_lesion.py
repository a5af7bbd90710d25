"""skin-lesion: HAM10000's 7 diagnoses, a MobileNetV2-style CNN in PyTorch, torch.onnx export.

The network sees 96x96 RGB tensors built by the shared preprocessing
(med_classifier.domain.preprocessing, via training.datasets.common.tensors): the very tensors
serving builds from the same file. Augmentation (flips, quarter turns, small affine
shifts/rotations/zoom, brightness/contrast jitter) runs as torch ops on those tensors
during training only. Class imbalance: inverse-frequency ("balanced") class weights in
the cross-entropy loss. The exported graph ends in a softmax: its output
"probabilities" holds class probabilities in CLASSES order. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.calibration import ServedOutput
from training.candidate import Candidate, NativeWeightsFile, TrainOptions
from training.datasets import ham10000
from training.datasets.common import ImageDataset, Split
from training.gate import PromotionGate
from training.image_training import (
    FineTuning,
    ImageData,
    RunLength,
    image_candidate,
    image_data,
    load_dataset,
    run_length,
)
from training.metrics import classification_metrics, parity_figures
from training.operating_point import fit_serving

log = logging.getLogger("training")

MODEL_ID = "skin-lesion"
CLASSES = ham10000.CLASSES
DESCRIPTION = "Dermatoscopic image (HAM10000's 7 diagnoses: " + ", ".join(CLASSES) + "). NOT FOR CLINICAL USE."
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
IMAGE_SIZE = 96
# ImageNet statistics: the usual choice for dermatoscopy CNNs, and what any
# ImageNet-pretrained MobileNetV2 weights passed with --pretrained expect.
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
# Gate. On the real HAM10000 (grouped by lesion, 96x96 inputs) a small CNN trained from
# scratch reaches a macro F1 of about 0.5-0.6, and with balanced class weights finds
# roughly half to two thirds of the melanomas (expected figures for small CNNs on this
# data set: the real set is not in this repo, so not measured here). Always answering "nv" (67 % of the
# images) scores macro F1 0.11 and melanoma recall 0. The gate asks for a clearly useful
# model on the real set without demanding what a small CNN cannot give: macro F1 >= 0.45
# and melanoma recall >= 0.45 (a missed melanoma is the costly error). The synthetic
# stand-in clears it comfortably: smoke runs, seeds 0-3 and 42, macro F1 0.94-1.0 and
# melanoma recall 1.0; the default run 1.0.
DEFAULT_GATE = PromotionGate(minimums={"test_macro_f1": 0.45, "test_recall_mel": 0.45})

ESTIMATOR = "mobilenetv2-style-cnn"
OPSET = 18
MAX_IR_VERSION = 10  # onnxruntime 1.31 refuses IR 14 (onnx 1.23's default); 10 is ample for opset 18
WIDTH_MULTIPLIER = 0.5
LAST_CHANNELS = 384
DROPOUT = 0.2
# BatchNorm running statistics must settle within the few steps of a short run (a smoke
# epoch is ~8 steps): torch's default momentum 0.1 leaves them far off and the model
# collapses to one class in eval mode for the first epochs.
BN_MOMENTUM = 0.3
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
BATCH_SIZE = 32
EPOCHS = 24
PATIENCE = 6  # epochs without a val-loss improvement before stopping
# Retraining from production's weights (training.retrain): a tenth of the learning rate, a third of the epochs.
FINE_TUNING = FineTuning(epochs=8, smoke_epochs=3, patience=3, learning_rate=LEARNING_RATE / 10)
MIN_DELTA = 1e-4
SYNTHETIC_PER_CLASS = 120  # nv gets twice as many: 960 images
# Smoke runs: a small synthetic set, fewer epochs; on a real data set (--data-dir),
# at most this many images of each split (after the lesion-grouped split).
SMOKE = {"per_class": 48, "epochs": 10, "patience": 4, "max_images": {"train": 480, "valid": 160, "test": 320}}
# (expansion t, output channels c, repeats n, first stride s), as in MobileNetV2 but
# shorter: a 96x96 input reaches 3x3 after five stride-2 stages.
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1), (6, 160, 1, 2))


def image_input():
    from med_classifier.domain.manifest import ImageInput

    return ImageInput(
        input_name=INPUT_NAME, height=IMAGE_SIZE, width=IMAGE_SIZE, channels=3, layout="NCHW", mean=MEAN, std=STD
    )


# ---------------------------------------------------------------------------- model


def build_model():
    """MobileNetV2-style network (training/skin_lesion_network.py): inverted residual blocks (1x1
    expand, 3x3 depthwise, 1x1 linear projection, residual when shapes allow), width multiplier,
    logits out."""
    from training.skin_lesion_network import MobileNetV2Small

    return MobileNetV2Small(len(CLASSES), BLOCKS, WIDTH_MULTIPLIER, LAST_CHANNELS, DROPOUT, BN_MOMENTUM)


def with_softmax(model):
    """The served graph: logits -> class probabilities."""
    from training.skin_lesion_network import Probabilities

    return Probabilities(model)


def load_pretrained(model, path: Path) -> dict:
    """Start from a local state_dict (never downloaded). Tensors whose name and shape
    match are loaded (e.g. a backbone trained elsewhere with another classifier head);
    returns what was loaded and skipped. Refuses a file that matches nothing."""
    import torch

    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a PyTorch state_dict, got {type(state).__name__}")
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not matching:
        raise ValueError(
            f"{path}: none of its {len(state)} tensors matches this network ({ESTIMATOR}, width {WIDTH_MULTIPLIER})"
        )
    skipped = sorted(set(state) - set(matching))
    model.load_state_dict(matching, strict=False)
    log.info(
        "pretrained: %d/%d tensors loaded from %s%s",
        len(matching),
        len(own),
        path,
        f" ({len(skipped)} skipped: shape or name mismatch)" if skipped else "",
    )
    return {"loaded": len(matching), "skipped": len(skipped), "total": len(own)}


# ---------------------------------------------------------------------- augmentation


def augment(batch, generator, mean, std):
    """Random flips, quarter turns, small affine jitter (shift up to 6 %, rotation up to
    15 degrees, zoom 0.9-1.1, reflected borders) and brightness/contrast jitter, applied
    to normalised NCHW tensors (pixels are recovered with mean/std, jittered, clamped
    to [0, 1] and normalised again)."""
    import torch
    import torch.nn.functional as F

    n = batch.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    flip_h, flip_v = rand(n) < 0.5, rand(n) < 0.5
    batch = torch.where(flip_h[:, None, None, None], batch.flip(3), batch)
    batch = torch.where(flip_v[:, None, None, None], batch.flip(2), batch)
    turns = rand(n) < 0.5
    batch = torch.where(turns[:, None, None, None], batch.transpose(2, 3), batch)  # with flips: all 8 symmetries
    angle = (rand(n) * 2 - 1) * math.radians(15)
    zoom = 0.9 + rand(n) * 0.2
    shift = (rand(n, 2) * 2 - 1) * 0.12  # affine_grid units: the image spans [-1, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    pixels = batch * std + mean
    contrast = 0.85 + rand(n, 1, 1, 1) * 0.3
    brightness = (rand(n, 1, 1, 1) * 2 - 1) * 0.08
    pixels = ((pixels - 0.5) * contrast + 0.5 + brightness).clamp(0.0, 1.0)
    return (pixels - mean) / std


# --------------------------------------------------------------------------- training


@dataclass
class Fit:
    model: object  # torch.nn.Module with the best weights, eval mode
    history: list[dict]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights n / (k * n_c) over the classes present in training; a
    class absent from training gets weight 0 (it contributes no loss anyway)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def _predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's output for every row, in eval mode, batch by batch."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(x[start : start + batch_size])).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), dtype=np.float32)


def fit(model, data: ImageData, length: RunLength, *, weights: np.ndarray, seed: int) -> Fit:
    """AdamW with a cosine learning-rate schedule (one warm-up epoch), weighted
    cross-entropy, early stopping on the (equally weighted) validation loss with the
    best epoch's weights restored."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    weight = torch.tensor(weights, dtype=torch.float32)
    epochs, batch_size = length.epochs, length.batch_size
    xt, yt = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train.astype(np.int64))
    steps_per_epoch = max(1, math.ceil(len(xt) / batch_size))
    step = _optimisation_step(model, weight, epochs, steps_per_epoch, length.learning_rate)
    history: list[dict] = []
    best = _BestEpoch()
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        loss = _train_epoch(model, xt, yt, batch_size, step, generator)
        history.append({"epoch": epoch, "loss": loss, **_validate(model, data.x_valid, data.y_valid, weight)})
        improved = best.update(model, epoch, history[-1]["val_loss"])
        _log_epoch(history[-1], epochs, time.perf_counter() - started, improved)
        if best.stale >= length.patience and epoch < epochs:
            log.info(
                "early stop: no val-loss improvement for %d epochs; best epoch %d (val_loss %.4f)",
                length.patience,
                best.epoch,
                best.val_loss,
            )
            break
    model.load_state_dict(best.state)
    model.eval()
    return Fit(
        model=model,
        history=history,
        best_epoch=best.epoch,
        best_val_loss=best.val_loss,
        stopped_early=len(history) < epochs,
    )


def _learning_rate_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to the full rate, then a cosine decay to 3 % of it."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))) * 0.97 + 0.03


def _optimisation_step(model, weight, epochs: int, steps_per_epoch: int, learning_rate: float):
    """A function that takes one AdamW step (weighted cross-entropy, scheduled learning
    rate) on a batch and returns the batch's loss."""
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=WEIGHT_DECAY)
    total = epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total // 4 or 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _learning_rate_factor(step, warmup, total))

    def step(batch, labels) -> float:
        loss = F.cross_entropy(model(batch), labels, weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        return loss.item()

    return step


def _train_epoch(model, x, y, batch_size: int, step, generator) -> float:
    """One pass over the training tensors in a fresh random order, each batch augmented;
    returns the mean training loss."""
    import torch

    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    model.train()
    order = torch.randperm(len(x), generator=generator)
    running, seen = 0.0, 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        if len(index) < 2:  # BatchNorm needs two samples
            continue
        running += step(augment(x[index], generator, mean, std), y[index]) * len(index)
        seen += len(index)
    return running / max(seen, 1)


def _validate(model, x_valid: np.ndarray, y_valid: np.ndarray, weight) -> dict[str, float]:
    """Validation loss (class-weighted like training), accuracy and macro F1, in eval mode."""
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import f1_score

    labels = torch.from_numpy(y_valid.astype(np.int64))
    model.eval()
    with torch.inference_mode():
        logits = torch.from_numpy(_predict(model, x_valid))
        val_loss = float(F.cross_entropy(logits, labels, weight=weight))
    predicted = logits.argmax(1).numpy()
    return {
        "val_loss": val_loss,
        "val_accuracy": float(np.mean(predicted == y_valid)),
        "val_macro_f1": float(
            f1_score(y_valid, predicted, labels=list(range(len(CLASSES))), average="macro", zero_division=0)
        ),
    }


class _BestEpoch:
    """The epoch with the lowest validation loss so far (a gain must exceed MIN_DELTA),
    a copy of its weights, and how many epochs have passed without a gain since."""

    def __init__(self):
        self.val_loss, self.epoch, self.state, self.stale = math.inf, 0, None, 0

    def update(self, model, epoch: int, val_loss: float) -> bool:
        """Take this epoch into account; True when it is the new best."""
        import copy

        improved = val_loss < self.val_loss - MIN_DELTA
        if improved:
            self.val_loss, self.epoch, self.state, self.stale = val_loss, epoch, copy.deepcopy(model.state_dict()), 0
        else:
            self.stale += 1
        return improved


def _log_epoch(record: dict, epochs: int, seconds: float, improved: bool) -> None:
    log.info(
        "epoch %2d/%d  loss %.4f  val_loss %.4f  val_accuracy %.4f  val_macro_f1 %.4f  %.1f s%s",
        record["epoch"],
        epochs,
        record["loss"],
        record["val_loss"],
        record["val_accuracy"],
        record["val_macro_f1"],
        seconds,
        "  *" if improved else "",
    )


# ----------------------------------------------------------------------------- export


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter logs every graph rewrite at INFO and warns about torchvision
    ops it cannot register; keep the training log readable."""
    loggers = [
        logging.getLogger(name)
        for name in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo", "torch.fx")
    ]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(model) -> bytes:
    """One self-contained ONNX file (weights embedded), dynamic batch axis, softmax
    output named "probabilities", opset 18, IR version onnxruntime 1.31 accepts."""
    import onnx
    import torch

    wrapped = with_softmax(model).eval()
    example = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with tempfile.TemporaryDirectory() as tmp, _quiet_exporter():
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            wrapped,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=4096)}},
            verbose=False,
        )
        proto = onnx.load(str(path), load_external_data=True)  # embeds any side file's weights
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError("ONNX export left external weights behind")
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise RuntimeError(
            f"torch.onnx produced inputs {inputs} / outputs {outputs}, expected [{INPUT_NAME!r}] / [{OUTPUT_NAME!r}]"
        )
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def parity(native_proba: np.ndarray, onnx_bytes: bytes, x: np.ndarray, served: ServedOutput) -> dict[str, float | int]:
    """Native torch's probabilities on the tensors x (eval mode) vs onnxruntime's, as served
    (calibrated)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (onnx_proba,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    return parity_figures(native_proba, onnx_proba, served)


def native_proba(model, x: np.ndarray) -> np.ndarray:
    """The trained network's class probabilities (eval mode), float64."""
    return _predict(with_softmax(model), x).astype(np.float64)


# ------------------------------------------------------------------------------ train


def load_data(options: TrainOptions) -> ImageDataset:
    per_class = SMOKE["per_class"] if options.smoke else SYNTHETIC_PER_CLASS
    return load_dataset(options, ham10000, per_class)


def _smoke_subset(dataset: ImageDataset, parts: Split, seed: int) -> Split:
    """A random subset of each split (lesions still never straddle splits)."""
    rng = np.random.default_rng(seed)
    limits = SMOKE["max_images"]
    chosen = {name: np.sort(rng.permutation(getattr(parts, name))[: limits[name]]) for name in limits}
    return Split(**chosen)


def train(options: TrainOptions = TrainOptions()) -> Candidate:
    started = time.perf_counter()
    _seed(options.seed)
    length = run_length(
        options,
        epochs=EPOCHS,
        smoke_epochs=SMOKE["epochs"],
        patience=PATIENCE,
        smoke_patience=SMOKE["patience"],
        batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        fine_tuning=FINE_TUNING,
    )
    spec = image_input()
    data = image_data(options, load_data(options), spec, _smoke_subset)
    _require_valid_and_test(data)
    weights = class_weights(data.y_train, len(CLASSES))
    log.info("class weights (inverse frequency): %s", ", ".join(f"{c} {w:.2f}" for c, w in zip(CLASSES, weights)))
    model, pretrained = _initial_model(options.pretrained, length)
    fitted = fit(model, data, length, weights=weights, seed=options.seed)
    # Temperature scaling fitted on the validation split; multiclass: no operating point.
    test_raw = native_proba(fitted.model, data.x_test)
    serving = fit_serving(
        classes=list(CLASSES),
        outputs={"probabilities": OUTPUT_NAME},
        fit_proba=native_proba(fitted.model, data.x_valid),
        fit_y=data.y_valid,
        fitted_on=f"validation split ({len(data.y_valid)} images)",
        test_proba=test_raw,
        y_test=data.y_test,
    )
    proba = serving.test_proba
    onnx_bytes, check = _export(fitted.model, test_raw, data.x_test, serving.served)
    framework, converter = versions()
    return image_candidate(
        options,
        data,
        spec,
        output_name=OUTPUT_NAME,
        proba=proba,
        history=fitted.history,
        native_model=with_softmax(fitted.model).eval(),
        model_id=MODEL_ID,
        description=DESCRIPTION,
        task="multiclass",
        classes=list(CLASSES),
        onnx=onnx_bytes,
        metrics=_metrics(data.y_test, proba, fitted, started),
        parity=check,
        estimator=ESTIMATOR,
        params=_params(options, length, fitted, pretrained),
        framework=framework,
        converter=converter,
        **serving.candidate_fields(),
        native_weights=native_weights(fitted.model),
    )


def native_weights(model) -> NativeWeightsFile:
    """The network's state_dict as torch.save writes it (what load_pretrained reads)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return NativeWeightsFile(format="torch_state_dict", data=buffer.getvalue())


def _seed(seed: int) -> None:
    """A reproducible run on this CPU's two cores."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    np.random.seed(seed)


def _require_valid_and_test(data: ImageData) -> None:
    if not len(data.y_valid) or not len(data.y_test):
        dataset = data.dataset
        raise ValueError(f"{dataset.name}: too few images/lesions for a train/valid/test split ({len(dataset.paths)})")


def _initial_model(pretrained_path: Path | None, length: RunLength):
    """build_model(), from a local state_dict when given; returns the model and what
    load_pretrained loaded (None when training from scratch)."""
    model = build_model()
    pretrained = load_pretrained(model, pretrained_path) if pretrained_path is not None else None
    log.info(
        "model: %s, width %.2f, %d parameters; %d epochs max (patience %d), batch %d, lr %g",
        ESTIMATOR,
        WIDTH_MULTIPLIER,
        _parameter_count(model),
        length.epochs,
        length.patience,
        length.batch_size,
        length.learning_rate,
    )
    return model, pretrained


def _parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _export(
    model, test_proba: np.ndarray, x_test: np.ndarray, served: ServedOutput
) -> tuple[bytes, dict[str, float | int]]:
    """The ONNX file and its parity with PyTorch (test_proba: its probabilities on x_test), as served."""
    onnx_bytes = export_onnx(model)
    check = parity(test_proba, onnx_bytes, x_test, served)
    log.info(
        "ONNX %d bytes; parity over %d test images: %d label mismatches, max |Δp| %.2e",
        len(onnx_bytes),
        check["rows"],
        check["label_mismatches"],
        check["max_abs_prob_diff"],
    )
    return onnx_bytes, check


def _metrics(y_test: np.ndarray, proba: np.ndarray, fitted: Fit, started: float) -> dict[str, float]:
    """Test metrics, the kept epoch's validation figures and the run's duration so far."""
    best = fitted.history[fitted.best_epoch - 1]
    metrics = {
        **classification_metrics(y_test, proba, CLASSES),
        "best_epoch": float(fitted.best_epoch),
        "val_loss": best["val_loss"],
        "val_accuracy": best["val_accuracy"],
        "val_macro_f1": best["val_macro_f1"],
        "train_seconds": time.perf_counter() - started,
    }
    log.info(
        "test: accuracy %.4f  macro F1 %.4f  melanoma recall %.4f  ROC AUC %.4f  (%.1f s)",
        metrics["test_accuracy"],
        metrics["test_macro_f1"],
        metrics["test_recall_mel"],
        metrics.get("test_roc_auc", float("nan")),
        metrics["train_seconds"],
    )
    return metrics


def _params(options: TrainOptions, length: RunLength, fitted: Fit, pretrained: dict | None) -> dict:
    return {
        "epochs": length.epochs,
        "epochs_run": len(fitted.history),
        "batch_size": length.batch_size,
        "learning_rate": length.learning_rate,
        "weight_decay": WEIGHT_DECAY,
        "optimizer": "AdamW+cosine",
        "width_multiplier": WIDTH_MULTIPLIER,
        "last_channels": LAST_CHANNELS,
        "image_size": IMAGE_SIZE,
        "class_weighting": "inverse_frequency_loss_weights",
        "augmentation": "flip_h,flip_v,transpose,affine(rot15,shift6%,zoom0.9-1.1),brightness,contrast",
        "early_stopping_patience": length.patience,
        "best_epoch": fitted.best_epoch,
        "stopped_early": fitted.stopped_early,
        "pretrained": str(options.pretrained) if options.pretrained else None,
        "pretrained_tensors_loaded": pretrained["loaded"] if pretrained else 0,
        "parameters": _parameter_count(fitted.model),
        "smoke": options.smoke,
        "seed": options.seed,
        "opset": OPSET,
        "fine_tune": options.fine_tune,
    }


def versions() -> tuple[dict[str, str], dict[str, str]]:
    """(framework, converter) version dicts for the Candidate and the manifest."""
    import onnxscript
    import torch

    return {"torch": torch.__version__}, {"torch.onnx": torch.__version__, "onnxscript": onnxscript.__version__}
