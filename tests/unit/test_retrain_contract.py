"""The retraining job's contract: hyperparameters (strings) and how they may only tighten
the gate, which uploads it trains on, Batch-mode staging from S3, and uploads joining
the training split alone (and the data hash)."""

import io
import json
import logging

import boto3
import numpy as np
import pytest
from moto import mock_aws

from med_classifier.domain.manifest import TrainingData
from med_classifier.domain.preprocessing import tensor_from_bytes
from training import chest_ct, retrain
from training.datasets import chest_ct as chest_ct_data
from training.datasets.common import add_uploads, split, tensors
from training.gate import PromotionGate
from training.job_contract import JobPaths, stage_from_environment

BASE = {"model": "chest-ct", "models_bucket": "models"}


def _jpeg(png: bytes) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buffer, "JPEG")
    return buffer.getvalue()


# --- hyperparameters ----------------------------------------------------------------------


def test_defaults_and_the_models_own_gate():
    settings = retrain.parse_hyperparameters(BASE)
    assert settings == retrain.JobSettings(model="chest-ct", models_bucket="models", gate=chest_ct.DEFAULT_GATE)
    assert (settings.smoke, settings.seed, settings.quantize, settings.max_regression) == (False, 42, True, 0.0)
    assert settings.epochs is None and settings.batch_size is None and settings.jobs_table is None


def test_string_values_are_parsed():
    settings = retrain.parse_hyperparameters(
        {
            **BASE,
            "job_id": "chest-ct-1",
            "jobs_table": "jobs",
            "smoke": "True",
            "seed": "7",
            "epochs": "3",
            "batch_size": "8",
            "quantize": "false",
            "max_regression": "0.02",
        }
    )
    assert (
        settings.job_id,
        settings.jobs_table,
        settings.smoke,
        settings.seed,
        settings.epochs,
        settings.batch_size,
        settings.quantize,
        settings.max_regression,
    ) == ("chest-ct-1", "jobs", True, 7, 3, 8, False, 0.02)


@pytest.mark.parametrize(
    "hyperparameters, message",
    [
        ({"models_bucket": "models"}, "required: model"),
        ({"model": "chest-ct"}, "required: models_bucket"),
        ({**BASE, "epoch": "3"}, "unknown hyperparameter(s): epoch"),
        ({**BASE, "smoke": "yes"}, "smoke='yes': expected true or false"),
        ({**BASE, "epochs": "0"}, "epochs='0': expected a finite number >= 1"),
        ({**BASE, "seed": "1.5"}, "seed='1.5': expected int"),
        ({**BASE, "max_regression": "-0.1"}, "max_regression='-0.1'"),
        ({**BASE, "max_regression": "nan"}, "max_regression='nan'"),
        ({**BASE, "gate_min_test_accuracy": "high"}, "gate_min_test_accuracy='high': expected float"),
        ({**BASE, "jobs_table": "jobs"}, "job_id is required with jobs_table"),
        ({**BASE, "model": "lung-xray"}, "unknown model 'lung-xray'"),
        ({**BASE, "model": "breast-cancer"}, "breast-cancer is a tabular model"),
    ],
)
def test_bad_hyperparameters_are_refused(hyperparameters, message):
    with pytest.raises(ValueError) as error:
        retrain.parse_hyperparameters(hyperparameters)
    assert message in str(error.value)


def test_gate_hyperparameters_only_tighten(caplog):
    default = PromotionGate(minimums={"test_accuracy": 0.85, "test_recall_x": 0.85}, maximums={"ece": 0.1})
    with caplog.at_level(logging.WARNING, logger="training"):
        gate = retrain.tightened_gate(
            default,
            {
                "gate_min_test_accuracy": "0.9",  # stricter: kept
                "gate_min_test_recall_x": "0.5",  # looser: ignored
                "gate_max_ece": "0.2",  # looser: ignored
                "gate_min_test_macro_f1": "0.3",  # not in the gate: added
                "gate_max_latency_ms": "50",
                "model": "chest-ct",
            },
        )
    assert gate.minimums == {"test_accuracy": 0.9, "test_recall_x": 0.85, "test_macro_f1": 0.3}
    assert gate.maximums == {"ece": 0.1, "latency_ms": 50.0}
    assert "gate_min_test_recall_x=0.5" in caplog.text and "gate_max_ece=0.2" in caplog.text
    assert "test_accuracy" not in caplog.text
    assert retrain.tightened_gate(default, {"gate_max_ece": "0.05"}).maximums == {"ece": 0.05}
    assert retrain.tightened_gate(default, {}) == default


def test_parsed_gate_cannot_be_loosened_below_the_models_default():
    settings = retrain.parse_hyperparameters(
        {**BASE, "gate_min_test_accuracy": "0.1", "gate_min_test_recall_adenocarcinoma": "0.95"}
    )
    assert settings.gate.minimums == {"test_accuracy": 0.85, "test_recall_adenocarcinoma": 0.95}


def test_the_command_line_refuses_anything_but_train(capsys):
    with pytest.raises(SystemExit) as info:
        retrain.main(["serve"])
    assert info.value.code == 2
    assert "argument command: invalid choice: 'serve' (choose from 'train')" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train"], []], ids=["train", "nothing"])
def test_the_command_line_takes_train_or_nothing_and_runs_the_job(argv, tmp_path, monkeypatch):
    # An empty job root: the job starts, finds no hyperparameters and reports that as its failure.
    monkeypatch.setenv("ML_ROOT", str(tmp_path))
    for name in ("RETRAIN_CHANNELS", "RETRAIN_HYPERPARAMETERS"):
        monkeypatch.delenv(name, raising=False)
    assert retrain.main(argv) == 1
    assert (
        tmp_path / "output" / "failure"
    ).read_text() == "ValueError: hyperparameter(s) required: model, models_bucket"


# --- uploads --------------------------------------------------------------------------------


def test_uploads_with_unknown_labels_or_unreadable_files_are_skipped_and_counted(tmp_path, caplog):
    channel = tmp_path / "uploads"
    normal, adeno = chest_ct_data.example_image("normal"), chest_ct_data.example_image("adenocarcinoma")
    files = {
        "normal/b.png": normal,
        "normal/a.JPEG": _jpeg(normal),
        "adenocarcinoma/c.jpg": _jpeg(adeno),
        "squamous/d.png": adeno,  # a label the model does not have
        "normal/e.gif": normal,  # not an accepted suffix
        "normal/f.png": normal[:80],  # truncated
        "adenocarcinoma/g.png": b"%PDF-1.7 not an image",
        "top.png": normal,  # no label folder
        "normal/nested/h.png": normal,  # not <label>/<file>
    }
    for relative, data in files.items():
        (channel / relative).parent.mkdir(parents=True, exist_ok=True)
        (channel / relative).write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="training"):
        uploads = retrain.collect_uploads(channel, chest_ct_data.CLASSES, chest_ct.image_input())
    assert uploads.images == (
        (channel / "adenocarcinoma/c.jpg", "adenocarcinoma"),
        (channel / "normal/a.JPEG", "normal"),
        (channel / "normal/b.png", "normal"),
    )
    assert uploads.skipped == 6
    for name in ("squamous/d.png", "normal/e.gif", "normal/f.png", "adenocarcinoma/g.png", "top.png", "h.png"):
        assert name in caplog.text
    assert retrain.collect_uploads(
        tmp_path / "absent", chest_ct_data.CLASSES, chest_ct.image_input()
    ) == retrain.Uploads((), 0)


def test_uploads_join_the_training_split_only_and_change_the_data_hash(tmp_path):
    dataset = chest_ct_data.load(chest_ct_data.write_synthetic(tmp_path / "set", 5, seed=3, size=32))
    spec = chest_ct.image_input()
    parts = split(dataset, seed=3)
    x_train, y_train = tensors(dataset, parts.train, spec), dataset.labels[parts.train]
    upload = tmp_path / "uploads" / "adenocarcinoma" / "u.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(chest_ct_data.example_image("adenocarcinoma"))

    unchanged = add_uploads(dataset, x_train, y_train, (), spec)
    assert unchanged[0] is x_train and unchanged[1] is y_train
    x, y = add_uploads(dataset, x_train, y_train, ((upload, "adenocarcinoma"),), spec)
    assert np.array_equal(x[:-1], x_train) and np.array_equal(y, [*y_train, 1])
    np.testing.assert_array_equal(x[-1], tensor_from_bytes(upload.read_bytes(), spec))  # serving's tensor

    plain = dataset.training_data(len(y_train), 4)
    with_upload = dataset.training_data(len(y), 4, ((upload, "adenocarcinoma"),))
    assert plain["sha256"] == dataset.sha256() and plain["n_uploads"] == 0
    assert with_upload["n_uploads"] == 1 and with_upload["sha256"] != plain["sha256"]
    relabelled = dataset.training_data(len(y), 4, ((upload, "normal"),))
    assert relabelled["sha256"] not in (plain["sha256"], with_upload["sha256"])
    assert TrainingData(**with_upload).n_uploads == 1
    assert TrainingData(**{k: v for k, v in plain.items() if k != "n_uploads"}).n_uploads == 0


# --- Batch mode -----------------------------------------------------------------------------


def test_batch_mode_stages_hyperparameters_and_channels_from_s3(tmp_path):
    paths = JobPaths(tmp_path / "ml")
    hyperparameters = {**BASE, "job_id": "chest-ct-1", "smoke": "true"}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="uploads")
        s3.put_object(Bucket="uploads", Key="uploads/chest-ct/normal/a.png", Body=chest_ct_data.example_image("normal"))
        s3.put_object(
            Bucket="uploads", Key="uploads/chest-ct/emphysema/b.png", Body=chest_ct_data.example_image("normal")
        )
        s3.put_object(Bucket="uploads", Key="uploads/skin-lesion/mel/c.png", Body=b"another model's")
        assert stage_from_environment(paths, s3, environ={}) is None  # SageMaker has staged already
        staged = stage_from_environment(
            paths,
            s3,
            environ={
                "RETRAIN_HYPERPARAMETERS": json.dumps(hyperparameters),
                "RETRAIN_CHANNELS": json.dumps({"uploads": "s3://uploads/uploads/chest-ct/"}),
            },
        )
    assert staged == {"uploads": 2}
    settings = retrain.parse_hyperparameters(paths.read_hyperparameters())
    assert settings.job_id == "chest-ct-1" and settings.smoke is True
    uploads = retrain.collect_uploads(paths.channel("uploads"), chest_ct_data.CLASSES, chest_ct.image_input())
    assert uploads == retrain.Uploads(((paths.channel("uploads") / "normal" / "a.png", "normal"),), 1)


# --- the image ---------------------------------------------------------------------------------


def test_the_image_runs_the_launchers_entry_point_with_locked_packages():
    from med_classifier.adapters.launchers import IMAGE_COMMAND, IMAGE_ENTRY_POINT
    from training.tracking import REPO_ROOT

    dockerfile = (REPO_ROOT / "training" / "Dockerfile").read_text()
    assert (
        f"ENTRYPOINT {json.dumps(IMAGE_ENTRY_POINT)}" in dockerfile and f"CMD {json.dumps(IMAGE_COMMAND)}" in dockerfile
    )
    locked = {line.split("==")[0].lower() for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()}
    wanted = [
        line
        for line in (REPO_ROOT / "training" / "requirements-job.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert wanted and all(name.lower() in locked for name in wanted)


def test_without_a_tracking_server_the_mlflow_run_goes_with_the_model_artefacts(tmp_path):
    from training.job_contract import JobPaths

    paths = JobPaths(tmp_path / "ml")
    environ = {}
    retrain.keep_mlflow_with_artefacts(paths, environ)
    assert environ == {"MLFLOW_LOCAL_DIR": str(tmp_path / "ml" / "model" / "mlflow")}
    for configured in ({"MLFLOW_TRACKING_URI": "https://mlflow.example"}, {"LOCAL_STATE_DIR": "/state"}):
        environ = dict(configured)
        retrain.keep_mlflow_with_artefacts(paths, environ)
        assert environ == configured  # a tracking server, or the local stack's shared store, wins
