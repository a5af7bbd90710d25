"""The retraining job in process against moto (S3 + DynamoDB): a smoke chest-ct version
in production, labelled uploads, and `python -m training.retrain` deciding to promote,
to reject (production untouched), or failing cleanly. Also the champion comparison and
the pipeline's handling of its reasons."""

import dataclasses
import json
import logging
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest

from med_classifier.adapters.jobs_table import JobsTable
from med_classifier.domain.jobs import COMPLETED, FAILED, IN_PROGRESS, JobRecord, new_job_id
from med_classifier.domain.manifest import sha256_hex
from tests.helpers.keras_models import chest_ct_candidate
from tests.helpers.models import publish
from tests.integration.conftest import BUCKET
from training import chest_ct, retrain
from training.champion import ChampionResult, compare_with_production
from training.datasets.chest_ct import CLASSES, example_image
from training.job_contract import JobPaths
from training.pipeline import finish

pytestmark = pytest.mark.slow

MODEL = "chest-ct"
TABLE = "med-classifier-jobs-test"
UPLOADS_BUCKET = "med-classifier-uploads-test"
UPLOADS_PER_CLASS = 3


@pytest.fixture
def jobs(s3):
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("job_id", "model", "created_at")],
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-model",
                "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [
                    {"AttributeName": "model", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
            }
        ],
    )
    return JobsTable(TABLE)


@pytest.fixture
def production(store):
    return publish(store, chest_ct_candidate())


@pytest.fixture
def paths(tmp_path, monkeypatch, state_dir):
    monkeypatch.setenv("ML_ROOT", str(tmp_path / "ml"))
    return JobPaths.from_environment()


def pending_job(jobs) -> str:
    job_id = new_job_id(MODEL)
    jobs.create(
        JobRecord(
            job_id=job_id, model=MODEL, trigger="uploads", backend="sagemaker", uploads=UPLOADS_PER_CLASS * len(CLASSES)
        )
    )
    return job_id


def upload_files() -> dict[str, bytes]:
    """Uploads channel content: a few good images per class, one with a label the model
    does not have, one corrupt PNG."""
    files = {
        f"{label}/{uuid.uuid4().hex}.png": example_image(label, seed=seed)
        for label in CLASSES
        for seed in range(1, UPLOADS_PER_CLASS + 1)
    }
    files[f"emphysema/{uuid.uuid4().hex}.png"] = example_image("normal")
    files[f"normal/{uuid.uuid4().hex}.png"] = example_image("normal")[:60]
    return files


def write_job(paths: JobPaths, hyperparameters: dict, uploads: dict[str, bytes] | None = None) -> None:
    """What SageMaker lays out before starting the container."""
    paths.hyperparameters.parent.mkdir(parents=True)
    paths.hyperparameters.write_text(json.dumps(hyperparameters))
    for relative, data in (uploads or {}).items():
        (paths.channel("uploads") / relative).parent.mkdir(parents=True, exist_ok=True)
        (paths.channel("uploads") / relative).write_bytes(data)


def hyperparameters(job_id: str, **extra: str) -> dict[str, str]:
    return {"model": MODEL, "job_id": job_id, "models_bucket": BUCKET, "jobs_table": TABLE, "smoke": "true", **extra}


def test_job_promotes_a_candidate_no_worse_than_production(jobs, store, production, paths, monkeypatch):
    from mlflow import MlflowClient

    started_from = []
    real_initial_model = chest_ct.initial_model

    def recording_initial_model(pretrained):
        model = real_initial_model(pretrained)
        started_from.append((Path(pretrained).read_bytes(), [w.copy() for w in model.get_weights()]))
        return model

    monkeypatch.setattr(chest_ct, "initial_model", recording_initial_model)
    job_id = pending_job(jobs)
    # Production and candidate are smoke runs on the same synthetic set: both score 1.0
    # here (training is deterministic), but another CPU's kernels might cost the candidate
    # an image. One test image (0.05) of slack keeps the test about promotion; the
    # comparison itself is tested below.
    write_job(paths, hyperparameters(job_id, max_regression="0.05"), upload_files())

    assert retrain.main(["train"]) == 0

    outcome = json.loads((paths.model_dir / "outcome.json").read_text())
    assert outcome["outcome"] == "promoted", outcome["reasons"]
    assert outcome["job_id"] == job_id and outcome["model"] == MODEL and outcome["reasons"] == []
    assert outcome["production_version"] == production.version
    assert outcome["n_uploads"] == UPLOADS_PER_CLASS * len(CLASSES) and outcome["skipped_uploads"] == 2
    pointer = store.read_pointer(MODEL)
    assert pointer.version == outcome["version"] != production.version and pointer.previous == production.version
    manifest = store.read_manifest(MODEL, pointer.version)
    assert manifest.training_data.n_uploads == 6 and manifest.training_data.sha256 != production.training_data.sha256
    assert manifest.metrics["test_accuracy"] >= production.metrics["test_accuracy"] - 0.05
    assert sha256_hex((paths.model_dir / "model.onnx").read_bytes()) == manifest.onnx_sha256 == pointer.sha256
    assert json.loads((paths.model_dir / "manifest.json").read_text())["version"] == pointer.version
    assert not paths.failure.exists()

    record = jobs.get(job_id)
    assert (record.state, record.outcome, record.version) == (COMPLETED, "promoted", pointer.version)
    assert record.production_version == production.version and record.started_at and record.ended_at
    assert record.metrics["test_accuracy"] == manifest.metrics["test_accuracy"]

    run = MlflowClient().get_run(manifest.mlflow["run_id"])
    assert run.data.tags["outcome"] == "published" and run.data.tags["production_version"] == production.version
    assert run.data.metrics["production_test_accuracy"] == production.metrics["test_accuracy"]
    assert run.data.params["n_uploads"] == "6"

    # It fine-tuned production: the network started with production's published weights (read back
    # and hash-checked), with the fine-tuning schedule (smoke: fewer epochs).
    ((weights_file, initial),) = started_from
    assert weights_file == store.read_native_weights(production)
    champion = chest_ct_candidate().evaluation["native_model"].get_weights()  # production's network, in memory
    assert len(initial) == len(champion) and all(np.array_equal(a, b) for a, b in zip(initial, champion))
    assert run.data.params["fine_tune"] == "True"
    assert float(run.data.params["learning_rate"]) == chest_ct.FINE_TUNING.learning_rate
    assert run.data.params["epochs"] == str(chest_ct.FINE_TUNING.smoke_epochs)
    assert outcome["fine_tuned_from"] == record.fine_tuned_from == production.version
    # The new version keeps its own weights for the next job.
    assert store.read_native_weights(manifest) is not None and manifest.native_weights.file == "model.weights.h5"
    # Deltas: candidate minus production on each metric production was measured on, in the record too.
    assert outcome["deltas"] == record.deltas and set(chest_ct.DEFAULT_GATE.minimums) <= set(record.deltas)
    for name, delta in record.deltas.items():
        assert delta == pytest.approx(manifest.metrics[name] - run.data.metrics[f"production_{name}"])


def test_tampered_production_weights_fail_the_job_before_training(jobs, store, s3, production, paths, monkeypatch):
    monkeypatch.setattr(chest_ct, "train", lambda options: pytest.fail("trained from unverified weights"))
    job_id = pending_job(jobs)
    write_job(paths, hyperparameters(job_id), upload_files())
    s3.put_object(Bucket=BUCKET, Key=f"models/{MODEL}/{production.version}/model.weights.h5", Body=b"tampered")

    assert retrain.main(["train"]) == 1

    described = production.native_weights
    assert paths.failure.read_text() == (
        f"IntegrityError: {MODEL}/{production.version}/model.weights.h5 sha256 {sha256_hex(b'tampered')[:12]}… "
        f"(8 bytes) does not match the manifest's {described.sha256[:12]}… ({described.size_bytes} bytes)"
    )
    assert (jobs.get(job_id).state, jobs.get(job_id).failure_code) == (FAILED, "job_error")
    assert store.list_versions(MODEL) == [production.version]
    assert store.read_pointer(MODEL).version == production.version


@pytest.mark.parametrize("case", ["no_native_weights", "fine_tune_false", "other_classes", "nothing_in_production"])
def test_without_production_weights_the_job_trains_from_scratch_and_says_so(
    jobs, store, paths, monkeypatch, caplog, case
):
    extra = {}
    if case == "no_native_weights":  # a version published before native weights were kept
        old = publish(store, dataclasses.replace(chest_ct_candidate(), native_weights=None))
        why = f"production {old.version} has no native weights (published before they were kept)"
    elif case == "fine_tune_false":
        publish(store, chest_ct_candidate())
        extra, why = {"fine_tune": "false"}, "fine_tune=false"
    elif case == "other_classes":  # its weights would mean other things to this network
        other = publish(store, dataclasses.replace(chest_ct_candidate(), classes=list(reversed(CLASSES))))
        why = f"production {other.version} takes other classes or input"
    else:
        why = "nothing in production"
    seen = []

    def train(options):
        seen.append(options)
        raise RuntimeError("stop: the options are what this test checks")

    monkeypatch.setattr(chest_ct, "train", train)
    write_job(paths, hyperparameters(pending_job(jobs), **extra))
    with caplog.at_level(logging.INFO, logger="training"):
        assert retrain.main(["train"]) == 1

    ((options,),) = [seen]
    assert options.pretrained is None and options.fine_tune is False
    assert f"{MODEL}: {why}: training from scratch" in caplog.messages


def test_batch_job_with_a_stricter_gate_is_rejected_and_production_stays(
    jobs, store, s3, production, paths, monkeypatch
):
    job_id = pending_job(jobs)
    s3.create_bucket(Bucket=UPLOADS_BUCKET)
    for relative, data in upload_files().items():
        s3.put_object(Bucket=UPLOADS_BUCKET, Key=f"uploads/{MODEL}/{relative}", Body=data)
    # Batch mode: no staged files, only the environment (what BatchLauncher sets).
    monkeypatch.setenv(
        "RETRAIN_HYPERPARAMETERS",
        json.dumps(hyperparameters(job_id, gate_min_test_accuracy="1.01", epochs="1", quantize="false")),
    )
    monkeypatch.setenv("RETRAIN_CHANNELS", json.dumps({"uploads": f"s3://{UPLOADS_BUCKET}/uploads/{MODEL}/"}))

    assert retrain.main([]) == 0

    assert json.loads(paths.hyperparameters.read_text())["job_id"] == job_id
    outcome = json.loads((paths.model_dir / "outcome.json").read_text())
    assert outcome["outcome"] == "rejected" and outcome["n_uploads"] == 6 and outcome["skipped_uploads"] == 2
    assert any(r.startswith("test_accuracy ") and r.endswith("< 1.01") for r in outcome["reasons"])
    assert store.read_pointer(MODEL).version == production.version
    assert store.list_versions(MODEL) == [production.version]
    assert not (paths.model_dir / "model.onnx").exists()
    record = jobs.get(job_id)
    assert (record.state, record.outcome, record.version) == (COMPLETED, "rejected", outcome["version"])
    assert record.reasons == outcome["reasons"] and record.production_version == production.version


@pytest.mark.parametrize("case", ["tabular_model", "corrupt_original_channel"])
def test_failing_job_writes_the_failure_marks_it_failed_and_publishes_nothing(jobs, store, production, paths, case):
    job_id = pending_job(jobs)
    if case == "tabular_model":
        write_job(paths, hyperparameters(job_id, model="breast-cancer"))
        expected = "ValueError: breast-cancer is a tabular model"
    else:
        write_job(paths, hyperparameters(job_id), upload_files())
        notes = paths.channel("original") / "notes" / "README.txt"
        notes.parent.mkdir(parents=True)
        notes.write_text("not a chest CT data set")
        expected = "ValueError: chest-ct: no normal or adenocarcinoma images found"

    assert retrain.main(["train"]) == 1

    reason = paths.failure.read_text()
    assert reason.startswith(expected) and "\n" not in reason
    record = jobs.get(job_id)
    # The failure file (SageMaker's FailureReason, for operators) has the reason; callers get a code and a sentence.
    assert (record.state, record.failure_code, record.outcome) == (FAILED, "job_error", None)
    assert record.failure_reason == "The job failed. The details are in the logs."
    assert store.list_versions(MODEL) == [production.version]
    assert store.read_pointer(MODEL).version == production.version
    assert not (paths.model_dir / "outcome.json").exists()


def test_job_state_moves_to_in_progress_before_training(jobs, store, production, paths, monkeypatch):
    job_id = pending_job(jobs)
    write_job(paths, hyperparameters(job_id))
    seen = []

    def train(options):
        seen.append(jobs.get(job_id).state)
        raise RuntimeError("out of memory\nwhile training")

    monkeypatch.setattr(chest_ct, "train", train)
    assert retrain.main(["train"]) == 1
    assert seen == [IN_PROGRESS]
    assert paths.failure.read_text() == "RuntimeError: out of memory while training"


# --- the champion comparison and the pipeline ------------------------------------------


def test_no_production_means_nothing_to_beat(store):
    assert compare_with_production(chest_ct_candidate(), chest_ct.DEFAULT_GATE, store) == ChampionResult(None)


def test_champion_compares_on_the_candidates_test_tensors(store, production):
    candidate = chest_ct_candidate()
    same = compare_with_production(candidate, chest_ct.DEFAULT_GATE, store)
    # Production is this very model: measured on the same tensors it scores the same.
    assert same.production_version == production.version and same.reasons == []
    assert same.production_metrics["test_accuracy"] == candidate.metrics["test_accuracy"]

    worse = dataclasses.replace(
        candidate,
        metrics={**candidate.metrics, "test_accuracy": candidate.metrics["test_accuracy"] - 0.1, "test_macro_f1": 0.0},
    )  # not in the gate: does not count
    reasons = compare_with_production(worse, chest_ct.DEFAULT_GATE, store).reasons
    assert len(reasons) == 1 and reasons[0].startswith("test_accuracy ") and production.version in reasons[0]
    assert compare_with_production(worse, chest_ct.DEFAULT_GATE, store, max_regression=0.1001).reasons == []

    resized = dataclasses.replace(candidate, input_spec={**candidate.input_spec, "height": 64, "width": 64})
    other = compare_with_production(resized, chest_ct.DEFAULT_GATE, store)
    assert other.production_metrics == {} and "cannot compare on the same test set" in other.reasons[0]


def test_finish_rejects_a_gate_passing_candidate_worse_than_production(store, production, state_dir):
    from mlflow import MlflowClient

    candidate = chest_ct_candidate()
    verdict = ChampionResult(production.version, {"test_accuracy": 1.0}, ["test_accuracy 0.9 < production 1.0"])
    outcome = finish(candidate, chest_ct.DEFAULT_GATE, store, quantize=False, champion=lambda c: verdict)
    assert not outcome.published and not outcome.gate.passed and outcome.champion is verdict
    assert outcome.gate.reasons == verdict.reasons and outcome.registry_version is None
    assert store.list_versions(MODEL) == [production.version]
    run = MlflowClient().get_run(outcome.mlflow_run_id)
    assert run.data.tags["outcome"] == "rejected_worse_than_production"
    assert run.data.metrics["gate_passed"] == 1.0 and run.data.metrics["production_test_accuracy"] == 1.0
