"""The two Keras models (tf2onnx): smoke training, gates, parity, serving, CLI."""

import numpy as np
import pytest

from med_classifier.domain.inference import OnnxClassifier
from med_classifier.domain.manifest import ImageInput
from med_classifier.domain.preprocessing import tensor_from_bytes
from tests.helpers.keras_models import breast_cancer_lite_candidate, chest_ct_candidate
from tests.helpers.models import manifest_for
from training import breast_cancer_lite, chest_ct, cli
from training.breast_cancer import load_wisconsin
from training.candidate import TrainOptions
from training.datasets.chest_ct import example_image

pytestmark = pytest.mark.slow


def _onnx_ops(onnx_bytes: bytes) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load_from_string(onnx_bytes).graph.node}


# --- breast-cancer-lite --------------------------------------------------------------


def test_lite_smoke_run_passes_its_gate_with_parity_on_every_row():
    candidate = breast_cancer_lite_candidate()
    verdict = breast_cancer_lite.DEFAULT_GATE.evaluate(candidate.metrics)
    assert verdict.passed, verdict.reasons
    assert candidate.parity["rows"] == 569 and candidate.parity["label_mismatches"] == 0
    assert candidate.parity["max_abs_prob_diff"] <= 1e-4 and candidate.parity_failures() == []
    for name in (
        "test_accuracy",
        "test_precision",
        "test_recall",
        "test_f1",
        "test_roc_auc",
        "cv_recall_mean",
        "cv_recall_std",
        "cv_accuracy_mean",
    ):
        assert 0.0 <= candidate.metrics[name] <= 1.0
    assert candidate.params["k_folds"] == 3 and candidate.params["smoke"] is True
    baseline = candidate.input_spec.pop("baseline")  # the training split's means (explanations)
    assert len(baseline) == 4 and 10 < baseline[0] < 20 and 0.05 < baseline[2] < 0.2
    assert candidate.input_spec == {
        "kind": "tabular",
        "feature_names": breast_cancer_lite.FEATURES,
        "input_name": "features",
        "example": [17.99, 10.38, 0.1184, 122.8],
    }
    assert candidate.outputs == {
        "probabilities": "p_malignant",
        "probability_format": "sigmoid_positive",
        "positive_index": 0,
    }
    proba, history = candidate.evaluation["proba"], candidate.evaluation["history"]
    assert proba.shape == (114, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert history[0]["epoch"] == 1 and {"loss", "val_loss"} <= set(history[0])
    assert set(candidate.framework) == {"tensorflow", "keras"} and set(candidate.converter) == {"tf2onnx"}


def test_lite_onnx_standardises_raw_values_itself():
    import onnxruntime as ort
    from sklearn.model_selection import train_test_split

    candidate = breast_cancer_lite_candidate()
    data = load_wisconsin()
    X = data.X[:, [data.feature_names.index(n) for n in breast_cancer_lite.FEATURES]].astype(np.float32)
    _, X_test, _, y_test = train_test_split(X, data.y, test_size=0.2, stratify=data.y, random_state=42)
    assert np.array_equal(y_test, candidate.evaluation["y_true"])
    session = ort.InferenceSession(candidate.onnx, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]
    (p_malignant,) = session.run(["p_malignant"], {"features": X_test})
    # Raw measurements in -> the probabilities Keras gave on the same raw rows.
    assert np.max(np.abs(p_malignant[:, 0] - candidate.evaluation["proba"][:, 0])) <= 1e-4
    standardised = (X_test - X.mean(axis=0)) / X.std(axis=0)
    (wrong,) = session.run(["p_malignant"], {"features": standardised.astype(np.float32)})
    assert np.max(np.abs(wrong - p_malignant)) > 0.1  # it does not expect pre-scaled input


def test_lite_serves_through_onnx_classifier():
    candidate = breast_cancer_lite_candidate()
    classifier = OnnxClassifier(manifest_for(candidate), candidate.onnx)
    data = load_wisconsin()
    rows = data.X[:, [data.feature_names.index(n) for n in breast_cancer_lite.FEATURES]].astype(np.float32)
    predictions, _ = classifier.predict(rows[:1])
    assert predictions[0]["label"] == "malignant"  # Wisconsin row 0, the input_spec example
    proba = classifier.predict_proba(rows)
    assert proba.shape == (569, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.mean(np.argmax(proba, axis=1) == data.y) > 0.85


# --- chest-ct --------------------------------------------------------------------------


def test_chest_ct_smoke_run_passes_its_gate_with_parity():
    candidate = chest_ct_candidate()
    verdict = chest_ct.DEFAULT_GATE.evaluate(candidate.metrics)
    assert verdict.passed, verdict.reasons
    assert candidate.parity["label_mismatches"] == 0 and candidate.parity["max_abs_prob_diff"] <= 1e-4
    assert candidate.parity["rows"] == len(candidate.evaluation["y_true"]) > 0 and candidate.parity_failures() == []
    assert candidate.task == "binary" and candidate.classes == ["normal", "adenocarcinoma"]
    assert candidate.input_spec == {
        "kind": "image",
        "input_name": "image",
        "height": 128,
        "width": 128,
        "channels": 1,
        "layout": "NHWC",
        "mean": [0.5],
        "std": [0.25],
    }
    assert candidate.outputs == {"probabilities": "probabilities", "probability_format": "probabilities"}
    x_eval = candidate.evaluation["x_eval"]
    assert x_eval.dtype == np.float32 and x_eval.shape == (candidate.parity["rows"], 128, 128, 1)
    assert 0 < len(candidate.evaluation["x_calibration"]) <= 128
    assert candidate.evaluation["history"][0]["epoch"] == 1
    assert candidate.training_data["synthetic"] is True and len(candidate.training_data["sha256"]) == 64
    assert candidate.params["smoke"] is True and candidate.params["pretrained"] == "none"
    assert len(candidate.onnx) < 3 * 1024 * 1024
    assert "Transpose" not in _onnx_ops(candidate.onnx)  # NHWC in, nothing to rearrange


def test_chest_ct_serves_example_images_through_the_shared_preprocessing():
    candidate = chest_ct_candidate()
    manifest = manifest_for(candidate)
    classifier = OnnxClassifier(manifest, candidate.onnx)
    spec = ImageInput(**candidate.input_spec)
    items = {name: tensor_from_bytes(example_image(name), spec) for name in candidate.classes}
    for name, item in items.items():
        (prediction,), _ = classifier.predict(item[None])
        assert prediction["label"] == name, prediction
    batch = np.stack([items["normal"], items["adenocarcinoma"], items["adenocarcinoma"], items["normal"]])
    predictions, _ = classifier.predict(batch)
    assert [p["label"] for p in predictions] == ["normal", "adenocarcinoma", "adenocarcinoma", "normal"]


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, on the mismatched file
def test_chest_ct_starts_from_pretrained_weights(state_dir, tmp_path):
    from training.keras_export import onnx_outputs, tensorflow

    tensorflow(0)
    # A network that cannot learn (zero kernels: zero activations, zero gradients) and
    # says "normal" through its output bias: one epoch from it leaves it saying "normal".
    model = chest_ct.build_model()
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            zeroed = [np.zeros_like(w) for w in weights]
            if layer.name.startswith("block") and "_bn" in layer.name:
                zeroed = [np.ones_like(weights[0]), *zeroed[1:3], np.ones_like(weights[3])]  # gamma, var = 1
            layer.set_weights(zeroed)
    output = model.get_layer(chest_ct.OUTPUT_NAME)
    output.set_weights([output.get_weights()[0], np.asarray([10.0, -10.0], dtype=np.float32)])
    weights = tmp_path / "stuck.weights.h5"
    model.save_weights(weights)

    candidate = chest_ct.train(TrainOptions(smoke=True, seed=42, epochs=1, pretrained=weights))
    assert candidate.params["pretrained"] == str(weights)
    # the file's weights, not a fresh start: the exported network still says "normal" for every image
    # (what is served differs: calibration and the operating point make sense of a constant output)
    raw = onnx_outputs(candidate.onnx, "image", chest_ct.OUTPUT_NAME, candidate.evaluation["x_eval"])
    assert np.all(raw[:, 0] > 0.99)

    with pytest.raises(ValueError, match="weights.h5"):
        chest_ct.train(TrainOptions(smoke=True, pretrained=tmp_path / "model.h5"))
    other = breast_cancer_lite.build_model(np.ones((4, 4)))
    other.save_weights(tmp_path / "lite.weights.h5")
    with pytest.raises(ValueError, match="does not fit"):
        chest_ct.initial_model(tmp_path / "lite.weights.h5")


def test_chest_ct_cli_smoke_run(state_dir, monkeypatch):
    """The CLI end to end (gate, INT8 attempt, MLflow) on the session's smoke model: the trainer is handed
    the options the CLI built and returns the cached candidate instead of training a second time."""
    from mlflow import MlflowClient

    candidate, calls = chest_ct_candidate(), []

    def train(options):
        calls.append(options)
        return candidate

    monkeypatch.setattr(chest_ct, "train", train)
    assert cli.main(["chest-ct", "--smoke", "--no-publish"]) == 0
    (options,) = calls
    assert options.smoke and options.seed == 42 and options.pretrained is None and options.data_dir is None
    assert (state_dir / "mlflow" / "mlflow.db").exists()
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("chest-ct").experiment_id])
    assert run.data.tags["outcome"] == "gate_passed_not_published"
    # The smoke run's synthetic images go to the state dir, in a folder of their seed and size.
    dataset = chest_ct.load_data(options)
    assert dataset.synthetic and (state_dir / "data" / "chest-ct-synthetic-42-40" / "SYNTHETIC.txt").exists()
