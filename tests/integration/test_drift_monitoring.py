"""Drift monitoring end to end on moto: the predict handler captures a replayed drifted stream
(scripts/replay_drift.py's rows) into the monitoring bucket, the scheduled drift monitor turns the
window into a report in S3 and EMF metrics, and GET /models/{model}/drift serves it."""

from __future__ import annotations

import copy
import json

import pytest

from med_classifier.adapters.capture_store import CAPTURES_PREFIX
from med_classifier.domain.drift import reference_bins
from med_classifier.domain.manifest import FeatureReference, OodReference
from scripts.replay_drift import drifted_rows
from tests.helpers.models import REPO_ROOT, LambdaContext, breast_cancer_candidate, load_function_module, manifest_for
from tests.integration.conftest import BUCKET
from training.breast_cancer import CLASSES, load_wisconsin

MONITORING = "med-classifier-monitoring-test"
MODEL = "breast-cancer"
EVENTS = REPO_ROOT / "events"
ROWS, BATCH = 120, 40


def wisconsin_reference() -> OodReference:
    """The drift part of an OOD reference, from the training data (training fills the real one)."""
    data = load_wisconsin()
    features = []
    for j, name in enumerate(data.feature_names):
        column = data.X[:, j].tolist()
        edges, proportions = reference_bins(column)
        features.append(
            FeatureReference(name=name, low=min(column), high=max(column), edges=edges, proportions=proportions)
        )
    mix = {label: float((data.y == i).mean()) for i, label in enumerate(CLASSES)}
    return OodReference(features=features, class_mix=mix)


@pytest.fixture
def stack(s3, store, monkeypatch):
    s3.create_bucket(Bucket=MONITORING)
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate).model_copy(update={"ood": wisconsin_reference()})
    store.publish(manifest, candidate.onnx)
    for name, value in {
        "MODELS_BUCKET": BUCKET,
        "MONITORING_BUCKET": MONITORING,
        "POINTER_REFRESH_SECONDS": "0",
        "CAPTURE_SAMPLE_RATE": "1",
        "CAPTURE_BATCH_SIZE": str(BATCH),
        "CAPTURE_FLUSH_SECONDS": "3600",
        "DRIFT_WINDOW_MINUTES": "60",
        "POWERTOOLS_METRICS_NAMESPACE": "Test",
        "POWERTOOLS_SERVICE_NAME": "med-classifier",
    }.items():
        monkeypatch.setenv(name, value)
    predict = load_function_module("predict")
    monitor = load_function_module("drift_monitor")
    return s3, predict, monitor


def predict_event(rows: list) -> dict:
    event = json.loads((EVENTS / "api-predict-breast-cancer.json").read_text())
    event["body"] = json.dumps({"instances": rows})
    return event


def drift_event() -> dict:
    event = json.loads((EVENTS / "api-list-models.json").read_text())
    event = copy.deepcopy(event)
    event.update(resource="/models/{model}/drift", path=f"/models/{MODEL}/drift", pathParameters={"model": MODEL})
    return event


def emf_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' in line]


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # GET routes emit none
def test_a_replayed_drifted_stream_is_captured_reported_and_served(stack, capsys):
    s3, predict, monitor = stack
    answer = predict.lambda_handler(drift_event(), LambdaContext())
    assert answer["statusCode"] == 404, answer
    assert json.loads(answer["body"])["error"] == {
        "code": "no_drift_report",
        "message": "No drift report for 'breast-cancer' yet: the drift monitor writes one on its schedule, "
        "from the predictions captured since.",
        "details": [],
    }

    rows = drifted_rows(ROWS)
    for start in range(0, ROWS, 20):
        answer = predict.lambda_handler(predict_event(rows[start : start + 20]), LambdaContext())
        assert answer["statusCode"] == 200, answer
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=MONITORING, Prefix=CAPTURES_PREFIX)["Contents"]]
    assert len(keys) == ROWS // BATCH and all(k.startswith(f"{CAPTURES_PREFIX}{MODEL}/") for k in keys)
    first = s3.get_object(Bucket=MONITORING, Key=keys[0])["Body"].read().decode().splitlines()
    record = json.loads(first[0])
    assert len(first) == BATCH
    assert set(record) == {"captured_at", "version", "inputs", "label", "in_distribution"}
    assert len(record["inputs"]) == 30 and record["label"] in CLASSES
    capsys.readouterr()

    scheduled = json.loads((EVENTS / "eventbridge-scheduled-drift.json").read_text())
    result = monitor.lambda_handler(scheduled, LambdaContext("DriftMonitorFunction", 512))
    assert result["statuses"] == {MODEL: "drift"} and result["drifting"] == [MODEL]
    report = json.loads(s3.get_object(Bucket=MONITORING, Key=f"drift/{MODEL}/latest.json")["Body"].read())
    assert report["n_records"] == ROWS
    assert {"mean radius", "worst area"} <= set(report["drifted_features"])
    assert report["class_mix"]["observed"]["malignant"] > 0.8 and report["class_mix"]["psi"] >= 0.25
    stamped = [o["Key"] for o in s3.list_objects_v2(Bucket=MONITORING, Prefix=f"drift/{MODEL}/")["Contents"]]
    assert len(stamped) == 2  # latest.json and the timestamped copy

    emitted = emf_lines(capsys.readouterr().out)
    (per_model,) = [line for line in emitted if line.get("model") == MODEL]
    assert per_model["service"] == "med-classifier"
    assert per_model["MaxFeaturePSI"] == [pytest.approx(report["max_feature_psi"])]
    assert per_model["ClassMixShift"] == [pytest.approx(report["class_mix"]["psi"])]
    assert per_model["CapturedPredictions"] == [ROWS]
    # Every prediction carried its in_distribution flag (the manifest has an OOD reference).
    assert report["ood_rate"] is not None
    assert per_model["OodRate"] == [pytest.approx(report["ood_rate"])]
    assert ["model", "service"] in [sorted(d) for d in per_model["_aws"]["CloudWatchMetrics"][0]["Dimensions"]]
    (stack_wide,) = [line for line in emitted if "ModelsDrifting" in line]
    assert "model" not in stack_wide and stack_wide["ModelsDrifting"] == [1.0]

    answer = predict.lambda_handler(drift_event(), LambdaContext())
    assert answer["statusCode"] == 200, answer
    served = json.loads(answer["body"])
    assert served["status"] == "drift" and served["drifted_features"] == report["drifted_features"]
    assert "NOT FOR CLINICAL USE" in served["notice"]


def test_a_failed_capture_write_never_fails_the_prediction(stack, caplog):
    s3, predict, _ = stack
    s3.delete_bucket(Bucket=MONITORING)  # the store is gone: every capture write fails
    rows = drifted_rows(BATCH)
    answer = predict.lambda_handler(predict_event(rows), LambdaContext())
    assert answer["statusCode"] == 200, answer
    assert len(json.loads(answer["body"])["predictions"]) == BATCH
    assert predict.capture_buffer().dropped == BATCH
    assert "drift capture not written" in caplog.text


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_an_unknown_models_drift_is_404_unknown_model(stack):
    _, predict, _ = stack
    event = drift_event()
    event.update(path="/models/nope/drift", pathParameters={"model": "nope"})
    answer = predict.lambda_handler(event, LambdaContext())
    assert (answer["statusCode"], json.loads(answer["body"])["error"]["code"]) == (404, "unknown_model")
