"""chest-ct: normal vs adenocarcinoma on chest CT slices, small VGG-style Keras CNN,
tf2onnx export. NOT FOR CLINICAL USE.

The exported graph takes what the shared preprocessing (med_classifier.domain.preprocessing)
builds from an image: 128x128 grayscale, scaled to [0, 1], (x - 0.5) / 0.25, NHWC.
Decoding, resizing and normalising happen there, never in the graph, and training
builds every tensor with the same code (training.datasets.common.tensors).
Augmentation only touches the training tensors, in the input pipeline below.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.calibration import ServedOutput
from training.candidate import Candidate, NativeWeightsFile, TrainOptions
from training.datasets import chest_ct as chest_ct_data
from training.datasets.chest_ct import CLASSES
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
from training.metrics import classification_metrics, log_parity
from training.operating_point import Serving, fit_serving

log = logging.getLogger("training")

MODEL_ID = "chest-ct"
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
IMAGE_SIZE = 128
MEAN = [0.5]
STD = [0.25]
# Gate, for the real data set (Kaggle "Chest CT-Scan images", adenocarcinoma vs
# normal). Its test folder holds roughly 120 adenocarcinoma and 54 normal slices, so
# "always adenocarcinoma" already scores accuracy ~0.69 (recall 1.0) and "always normal"
# recall 0: asking for accuracy AND adenocarcinoma recall of at least 0.85 rules out both
# shortcuts and still lets roughly 1 tumour in 7 be missed, a bar a working classifier of
# this binary pair should clear (the hard part of that set, telling the carcinoma
# subtypes apart, is not in this model). Not measured on the real set here (no copy in
# this environment): tighten it with --min once a real run is logged. The synthetic set
# clears it with room to spare (test accuracy and recall 1.0: default run seed 42,
# smoke runs seeds 42, 0 and 1): a miss there means training is broken.
DEFAULT_GATE = PromotionGate(minimums={"test_accuracy": 0.85, "test_recall_adenocarcinoma": 0.85})

# VGG-style: (filters, 3x3 convolutions) per block, each block ends in 2x2 max pooling:
# 128 -> 64 -> 32 -> 16 -> 8. Then a global max: "is there a nodule anywhere?".
BLOCKS = ((8, 1), (16, 1), (32, 2), (64, 2))
DROPOUT = 0.25
# Keras' default 0.99 leaves the moving statistics near their initial values after the
# few dozen steps of a small run, and the model useless in inference mode.
BN_MOMENTUM = 0.7
LEARNING_RATE = 2e-3
BATCH_SIZE = 16
EPOCHS, SMOKE_EPOCHS = 30, 8
PATIENCE, SMOKE_PATIENCE = 6, 3
# Retraining from production's weights (training.retrain): a tenth of the learning rate, fewer epochs.
FINE_TUNING = FineTuning(epochs=8, smoke_epochs=3, patience=3, learning_rate=LEARNING_RATE / 10)
WARMUP_EPOCHS = 3  # early stopping ignores these: val loss is erratic while BN settles
SYNTHETIC_PER_CLASS, SMOKE_PER_CLASS = 160, 40
# Smoke runs on a real data set keep at most this many images per class and split.
SMOKE_CAP = {"train": 48, "valid": 12, "test": 24}
MAX_SHIFT = 8  # pixels, each direction
MAX_BRIGHTNESS = 0.05  # in [0, 1] pixel units, before normalisation
# Operating point: the adenocarcinoma threshold reaching this recall on the validation split
# (a few dozen tumour slices: 0.95 tolerates one or two misses there, 0.99 would not).
POSITIVE_CLASS = "adenocarcinoma"
TARGET_RECALL = 0.95
AUGMENTATION = f"hflip, shift<={MAX_SHIFT}px, brightness+-{MAX_BRIGHTNESS}"


def image_input():
    from med_classifier.domain.manifest import ImageInput

    return ImageInput(
        input_name=INPUT_NAME, height=IMAGE_SIZE, width=IMAGE_SIZE, channels=1, layout="NHWC", mean=MEAN, std=STD
    )


def build_model():
    """The CNN, randomly initialised (seed it first: training.keras_export.tensorflow)."""
    import keras
    from keras import layers

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name=INPUT_NAME)
    x = inputs
    for block, (filters, convolutions) in enumerate(BLOCKS, start=1):
        for conv in range(1, convolutions + 1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalMaxPooling2D(name="global_max")(x)
    x = layers.Dropout(DROPOUT, name="dropout")(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name="chest_ct_cnn")


def check_pretrained(pretrained: Path | None) -> None:
    """Fail fast, before any data is read, on a file that cannot be Keras weights."""
    if pretrained is not None and not Path(pretrained).name.endswith(".weights.h5"):
        raise ValueError(f"--pretrained {pretrained}: expected a local Keras weights file (*.weights.h5)")


def initial_model(pretrained: Path | None):
    """build_model(), with the weights of a local .weights.h5 file when given (never
    downloaded: there is no published checkpoint for this network)."""
    model = build_model()
    if pretrained is not None:
        pretrained = Path(pretrained)
        check_pretrained(pretrained)
        try:
            model.load_weights(pretrained)
        except Exception as exc:  # wrong architecture, corrupt file
            raise ValueError(f"--pretrained {pretrained} does not fit the {MODEL_ID} network: {exc}") from exc
        log.info("starting from pretrained weights %s", pretrained)
    return model


def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random left-right flips, shifts of up to MAX_SHIFT pixels (edges repeated) and a
    brightness offset, on normalised NHWC tensors. A mirrored chest is still a chest;
    an upside-down one is not, so no vertical flips."""
    out = np.empty_like(batch)
    height, width = batch.shape[1:3]
    for i, item in enumerate(batch):
        if rng.random() < 0.5:
            item = item[:, ::-1]
        dy, dx = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=2)
        padded = np.pad(item, ((MAX_SHIFT, MAX_SHIFT), (MAX_SHIFT, MAX_SHIFT), (0, 0)), mode="edge")
        item = padded[MAX_SHIFT + dy : MAX_SHIFT + dy + height, MAX_SHIFT + dx : MAX_SHIFT + dx + width]
        out[i] = item + np.float32(rng.uniform(-MAX_BRIGHTNESS, MAX_BRIGHTNESS) / STD[0])
    return out


def augmented_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """A keras PyDataset of augmented, reshuffled training batches. Each batch is a pure
    function of (seed, epoch, batch index): reproducible whatever order Keras asks in."""
    import keras

    class AugmentedBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0

        def __len__(self):
            return -(-len(y) // batch_size)

        def __getitem__(self, index):
            order = np.random.default_rng([seed, self.epoch]).permutation(len(y))
            take = order[index * batch_size : (index + 1) * batch_size]
            rng = np.random.default_rng([seed, self.epoch, index])
            return augment(x[take], rng), y[take]

        def on_epoch_end(self):
            self.epoch += 1

    return AugmentedBatches()


def balanced_class_weights(y: np.ndarray) -> dict[int, float]:
    counts = np.bincount(y, minlength=len(CLASSES))
    return {c: float(len(y) / (len(CLASSES) * counts[c])) if counts[c] else 1.0 for c in range(len(CLASSES))}


@dataclass(frozen=True)
class Fit:
    model: object  # keras.Model with the kept epoch's weights
    history: object  # keras History of the fit
    best_epoch: int  # 1-based epoch whose weights were kept
    class_weight: dict[int, float]


def fit(model, data: ImageData, length: RunLength, seed: int) -> Fit:
    """Adam, balanced class weights, augmented batches; early stopping on the validation
    loss (not during the first WARMUP_EPOCHS) with the best epoch's weights restored."""
    import keras
    import tensorflow as tf

    from training import keras_export

    model.compile(
        optimizer=keras.optimizers.Adam(length.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    class_weight = balanced_class_weights(data.y_train)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=length.patience,
        restore_best_weights=True,
        start_from_epoch=min(WARMUP_EPOCHS, length.epochs - 1),
    )
    log.info(
        "training %s (%d parameters) for up to %d epochs, batch %d, class weights %s…",
        model.name,
        model.count_params(),
        length.epochs,
        length.batch_size,
        {CLASSES[c]: round(w, 3) for c, w in class_weight.items()},
    )
    started = time.perf_counter()
    history = model.fit(
        augmented_batches(data.x_train, data.y_train, length.batch_size, seed),
        validation_data=tf.data.Dataset.from_tensor_slices((data.x_valid, data.y_valid)).batch(64),
        epochs=length.epochs,
        class_weight=class_weight,
        shuffle=False,
        verbose=0,
        callbacks=[stopper, keras_export.epoch_logger(length.epochs, metric="accuracy")],
    )
    fitted = Fit(model=model, history=history, best_epoch=int(stopper.best_epoch) + 1, class_weight=class_weight)
    log.info(
        "trained %d epochs in %.1f s; kept epoch %d (lowest val loss)",
        len(history.history["loss"]),
        time.perf_counter() - started,
        fitted.best_epoch,
    )
    return fitted


def _cap_per_class(indices: np.ndarray, labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(indices[labels[indices] == c])[:cap] for c in range(len(CLASSES))]
    return np.sort(np.concatenate(keep))


def _smoke_subset(dataset: ImageDataset, parts: Split, seed: int) -> Split:
    """At most SMOKE_CAP images of each class in each split."""
    return Split(
        *(_cap_per_class(getattr(parts, s), dataset.labels, SMOKE_CAP[s], seed) for s in ("train", "valid", "test"))
    )


def load_data(options: TrainOptions) -> ImageDataset:
    per_class = SMOKE_PER_CLASS if options.smoke else SYNTHETIC_PER_CLASS
    return load_dataset(options, chest_ct_data, per_class, size=IMAGE_SIZE)


def train(options: TrainOptions = TrainOptions()) -> Candidate:
    from training import keras_export

    check_pretrained(options.pretrained)
    keras_export.tensorflow(options.seed)
    length = run_length(
        options,
        epochs=EPOCHS,
        smoke_epochs=SMOKE_EPOCHS,
        patience=PATIENCE,
        smoke_patience=SMOKE_PATIENCE,
        batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        fine_tuning=FINE_TUNING,
    )
    spec = image_input()
    data = image_data(options, load_data(options), spec, _smoke_subset)
    fitted = fit(initial_model(options.pretrained), data, length, options.seed)
    serving = _fit_serving(fitted.model, data, options.target_recall or TARGET_RECALL)
    proba, metrics = serving.test_proba, _evaluate(data, serving)
    onnx_bytes, check = _export(fitted.model, data.x_test, serving.served)
    framework, converter = keras_export.versions()
    return image_candidate(
        options,
        data,
        spec,
        output_name=OUTPUT_NAME,
        proba=proba,
        history=keras_export.history_records(fitted.history),
        native_model=fitted.model,
        model_id=MODEL_ID,
        description="Chest CT slice: normal vs adenocarcinoma. Small VGG-style CNN (Keras).",
        task="binary",
        classes=list(CLASSES),
        onnx=onnx_bytes,
        metrics=metrics,
        parity=check,
        estimator="keras_vgg_cnn",
        params=_params(options, length, fitted),
        framework=framework,
        converter=converter,
        **serving.candidate_fields(),
        native_weights=native_weights(fitted.model),
    )


def native_weights(model) -> NativeWeightsFile:
    """The network's weights as Keras writes them (a .weights.h5 file: what initial_model loads)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.weights.h5"
        model.save_weights(path)
        return NativeWeightsFile(format="keras_weights_h5", data=path.read_bytes())


def _fit_serving(model, data: ImageData, target_recall: float) -> Serving:
    """Calibration and operating point fitted on the Keras model's validation-split output."""
    from training.keras_export import keras_outputs

    return fit_serving(
        classes=list(CLASSES),
        outputs={"probabilities": OUTPUT_NAME},
        fit_proba=keras_outputs(model, data.x_valid).astype(np.float64),
        fit_y=data.y_valid,
        fitted_on=f"validation split ({len(data.y_valid)} images)",
        test_proba=keras_outputs(model, data.x_test).astype(np.float64),
        y_test=data.y_test,
        target=(POSITIVE_CLASS, target_recall),
    )


def _evaluate(data: ImageData, serving: Serving) -> dict[str, float]:
    """Test metrics of the served (calibrated) probabilities, labels at the operating point."""
    metrics = classification_metrics(data.y_test, serving.test_proba, CLASSES, serving.served.operating_point)
    log.info(
        "test: accuracy %.4f  adenocarcinoma recall %.4f  precision %.4f  roc_auc %.4f",
        metrics["test_accuracy"],
        metrics["test_recall_adenocarcinoma"],
        metrics["test_precision_adenocarcinoma"],
        metrics.get("test_roc_auc", float("nan")),
    )
    return metrics


def _export(model, x_test: np.ndarray, served: ServedOutput) -> tuple[bytes, dict[str, float | int]]:
    """The ONNX file and its parity with Keras on the test tensors, of the served output
    (calibrated, labels at the operating point)."""
    from training import keras_export

    onnx_bytes = keras_export.to_onnx(model, INPUT_NAME, (IMAGE_SIZE, IMAGE_SIZE, 1), OUTPUT_NAME)
    check = keras_export.parity(model, onnx_bytes, INPUT_NAME, OUTPUT_NAME, x_test, served=served)
    log_parity(check)
    log.info("ONNX: %.0f KB", len(onnx_bytes) / 1024)
    return onnx_bytes, check


def _params(options: TrainOptions, length: RunLength, fitted: Fit) -> dict:
    return {
        "model_type": "keras_vgg_cnn",
        "architecture": "-".join(f"{f}x{n}" for f, n in BLOCKS) + "-gmp",
        "n_parameters": int(fitted.model.count_params()),
        "epochs": length.epochs,
        "epochs_run": len(fitted.history.history["loss"]),
        "best_epoch": fitted.best_epoch,
        "batch_size": length.batch_size,
        "learning_rate": length.learning_rate,
        "optimizer": "adam",
        "dropout": DROPOUT,
        "image_size": IMAGE_SIZE,
        "augmentation": AUGMENTATION,
        "class_weights": ",".join(f"{CLASSES[c]}={w:.4f}" for c, w in fitted.class_weight.items()),
        "patience": length.patience,
        "pretrained": str(options.pretrained) if options.pretrained else "none",
        "smoke": options.smoke,
        "seed": options.seed,
        "target_recall": options.target_recall or TARGET_RECALL,
        "fine_tune": options.fine_tune,
    }
