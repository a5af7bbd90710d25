"""skin-lesion: smoke training on synthetic HAM10000-layout data passes its gate, the
torch.onnx export is one self-contained file that serving loads and that reproduces
PyTorch, every class's example image comes back with its own label, --pretrained
weights are the starting point (a fine-tune from the published native weights too), and the
CLI runs the whole pipeline."""

import numpy as np
import onnx
import pytest

from med_classifier.domain.calibration import calibrate
from med_classifier.domain.inference import OnnxClassifier
from med_classifier.domain.manifest import Calibration, ImageInput
from med_classifier.domain.preprocessing import tensor_from_bytes
from tests.helpers.models import manifest_for
from tests.helpers.skin_lesion import skin_lesion_candidate
from training import cli, skin_lesion
from training.candidate import TrainOptions
from training.datasets import ham10000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def candidate():
    return skin_lesion_candidate()


@pytest.fixture(scope="module")
def classifier(candidate):
    return OnnxClassifier(manifest_for(candidate), candidate.onnx)


def test_smoke_training_passes_the_gate_with_parity(candidate):
    verdict = skin_lesion.DEFAULT_GATE.evaluate(candidate.metrics)
    assert verdict.passed, verdict.reasons
    assert candidate.parity_failures() == []
    assert candidate.parity_limits == {"label_mismatches": 0, "max_abs_prob_diff": 1e-4}
    n_test = candidate.training_data["n_test"]
    assert candidate.parity["rows"] == n_test > 0 and candidate.parity["label_mismatches"] == 0
    assert candidate.task == "multiclass" and candidate.classes == ham10000.CLASSES
    assert candidate.input_spec == {
        "kind": "image",
        "input_name": "image",
        "height": 96,
        "width": 96,
        "channels": 3,
        "layout": "NCHW",
        "mean": skin_lesion.MEAN,
        "std": skin_lesion.STD,
    }
    assert candidate.training_data["synthetic"] is True and len(candidate.training_data["sha256"]) == 64
    assert set(candidate.converter) == {"torch.onnx", "onnxscript"} and "torch" in candidate.framework
    assert candidate.params["smoke"] is True and candidate.params["pretrained"] is None
    assert candidate.params["class_weighting"].startswith("inverse_frequency")

    evaluation = candidate.evaluation
    assert evaluation["x_eval"].shape == (n_test, 3, 96, 96) and evaluation["x_eval"].dtype == np.float32
    assert evaluation["proba"].shape == (n_test, 7) and len(evaluation["y_true"]) == n_test
    assert 0 < len(evaluation["x_calibration"]) <= 128 and evaluation["x_calibration"].dtype == np.float32
    import torch

    with torch.inference_mode():  # the in-memory PyTorch model the benchmark compares against
        native = evaluation["native_model"](torch.from_numpy(evaluation["x_eval"][:4])).numpy()
    # evaluation["proba"]: the served probabilities, calibrated as the manifest will say
    calibrated = calibrate(native, Calibration(**candidate.calibration))
    np.testing.assert_allclose(calibrated, evaluation["proba"][:4], atol=1e-6)
    history = evaluation["history"]
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert {"loss", "val_loss", "val_accuracy", "val_macro_f1"} <= set(history[0])
    best = candidate.params["best_epoch"]
    assert history[best - 1]["val_loss"] <= min(h["val_loss"] for h in history) + skin_lesion.MIN_DELTA


def test_onnx_is_one_self_contained_file_with_a_dynamic_batch(candidate):
    model = onnx.load_from_string(candidate.onnx)
    onnx.checker.check_model(model, full_check=True)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert len(candidate.onnx) < 4_000_000  # sized for Lambda
    assert model.ir_version <= 10 and max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 18
    (image,), (probabilities,) = model.graph.input, model.graph.output
    assert image.name == "image" and probabilities.name == "probabilities"
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 96, 96]
    assert model.graph.node[-1].op_type == "Softmax"


def test_serving_loads_it_and_batches_of_1_and_5_match_pytorch(candidate, classifier):
    x, native = candidate.evaluation["x_eval"], candidate.evaluation["proba"]
    for n in (1, 5):
        predictions, _ = classifier.predict(x[:n])
        assert len(predictions) == n
        served = np.array([[p["probabilities"][c] for c in candidate.classes] for p in predictions])
        np.testing.assert_allclose(served, native[:n], atol=1e-4)
        np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)


def test_every_class_example_image_comes_back_with_its_label(candidate, classifier):
    spec = ImageInput(**candidate.input_spec)
    batch = np.stack([tensor_from_bytes(ham10000.example_image(name), spec) for name in ham10000.CLASSES])
    predictions, _ = classifier.predict(batch)
    assert [p["label"] for p in predictions] == ham10000.CLASSES, [p["probabilities"] for p in predictions]


def test_a_weights_file_that_matches_no_layer_is_refused(tmp_path):
    import torch

    torch.save({"not.a.layer": torch.zeros(3)}, tmp_path / "unrelated.pt")
    with pytest.raises(ValueError, match="none of its 1 tensors matches"):
        skin_lesion.load_pretrained(skin_lesion.build_model(), tmp_path / "unrelated.pt")


def test_cli_smoke_run_exits_0(state_dir, monkeypatch, candidate):
    """The CLI end to end (gate, INT8 attempt, MLflow) on the session's smoke model: the
    trainer is handed the options the CLI built, and returns the cached candidate
    instead of training a second time."""
    from mlflow import MlflowClient

    calls = []

    def train(options):
        calls.append(options)
        return candidate

    monkeypatch.setattr(skin_lesion, "train", train)
    assert cli.main(["skin-lesion", "--smoke", "--no-publish"]) == 0
    (options,) = calls
    assert options.smoke and options.seed == 42 and options.pretrained is None and options.data_dir is None
    assert (state_dir / "mlflow" / "mlflow.db").exists()
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("skin-lesion").experiment_id])
    assert run.data.tags["outcome"] == "gate_passed_not_published"
    assert run.data.params["smoke"] == "True" and run.data.metrics["parity_label_mismatches"] == 0.0
    history = client.get_metric_history(run.info.run_id, "epoch_val_loss")
    assert len(history) == len(candidate.evaluation["history"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"roc.png", "confusion_matrix.png", "onnx-variants", "manifest.json"} <= artifacts


def test_fine_tuning_starts_from_the_published_weights_near_the_champion(tmp_path, state_dir, monkeypatch, candidate):
    """What a retraining job does with production's model.pt (training.retrain): the network starts
    with exactly those tensors, and its first epoch is already at the champion's level."""
    import torch

    weights = tmp_path / "model.pt"
    weights.write_bytes(candidate.native_weights.data)
    seen = {}
    real_fit = skin_lesion.fit

    def recording_fit(model, *args, **kwargs):
        seen["initial"] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(skin_lesion, "fit", recording_fit)
    fine = skin_lesion.train(TrainOptions(smoke=True, seed=42, pretrained=weights, fine_tune=True))

    champion = candidate.evaluation["native_model"].net.state_dict()  # the trained network, in memory
    assert set(seen["initial"]) == set(champion)
    assert all(torch.equal(seen["initial"][k], champion[k]) for k in champion)  # every tensor came from the file
    torch.manual_seed(42)
    scratch = skin_lesion.build_model().state_dict()  # what seed 42 starts from without --pretrained
    assert not torch.equal(seen["initial"]["features.0.weight"], scratch["features.0.weight"])
    assert fine.params["pretrained"] == str(weights) and fine.parity_failures() == []
    schedule = skin_lesion.FINE_TUNING
    assert fine.params["fine_tune"] is True and fine.params["learning_rate"] == schedule.learning_rate
    assert fine.params["epochs"] == schedule.smoke_epochs and fine.params["pretrained_tensors_loaded"] == len(champion)
    # Its first epoch is already at the champion's level (this seed: val macro F1 0.987 vs the champion's
    # 1.0); the champion's own first epoch, from scratch, was nowhere near (0.059).
    first, scratch_first = fine.evaluation["history"][0], candidate.evaluation["history"][0]
    assert first["val_macro_f1"] >= candidate.metrics["val_macro_f1"] - 0.05
    assert scratch_first["val_macro_f1"] < 0.5
    assert fine.native_weights.format == "torch_state_dict"
    assert fine.native_weights.data != candidate.native_weights.data
    assert (state_dir / "data").is_dir()  # synthetic data went to the test's state dir
