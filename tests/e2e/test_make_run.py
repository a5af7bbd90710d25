"""`make run`'s entry point end to end: first start trains and publishes; a restart
restores from the local mirror instead of retraining, and the MLflow runs stay."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from scripts.local_stack import free_port
from tests.e2e.test_smoke_test import assert_every_check_passes
from tests.helpers.models import MALIGNANT_EXAMPLE, REPO_ROOT
from tests.helpers.polling import wait_for
from training.datasets import chest_ct, ham10000

READY = "Local stack ready"

# It starts `make run`'s stack itself, not the session's (tests/conftest.py): a group of its own lets the
# other xdist worker run it while this one runs the tests that share the session's stacks.
pytestmark = pytest.mark.xdist_group("make-run")


def start_stack(env_file, state_dir, port, log_path):
    log = open(log_path, "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.local_stack",
            "--port",
            str(port),
            "--env-vars",
            str(env_file),
            "--state-dir",
            str(state_dir),
            "--quick-train",
        ],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 900  # first start trains all four models
    while time.monotonic() < deadline:
        if READY in log_path.read_text():
            return process
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"stack did not start:\n{log_path.read_text()[-3000:]}")


def stop_stack(process):
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    try:
        assert process.wait(timeout=60) == 0
    except subprocess.TimeoutExpired:
        process.terminate()  # never leave a stack (and its moto) running after the test
        process.wait(timeout=30)
        raise


def sign_in(user: str, state_dir) -> dict[str, str]:
    """The Authorization header of a demo user, the way README's banner shows (`scripts.local_cognito token`)."""
    done = subprocess.run(
        [sys.executable, "-m", "scripts.local_cognito", "token", user, "--state-dir", str(state_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return {"Authorization": done.stdout.strip()}


def predict(port, auth):
    response = requests.post(
        f"http://127.0.0.1:{port}/models/breast-cancer/predict",
        json={"instances": [MALIGNANT_EXAMPLE]},
        headers=auth,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def retrain_as_the_readme_shows(port, auth, state_dir):
    """README, "Retraining from labelled uploads": five uploads by the script (signed in as the demo
    clinician), then the new chest-ct version answers predict."""
    base = f"http://127.0.0.1:{port}"
    before = requests.get(f"{base}/models/chest-ct", headers=auth, timeout=60).json()
    threshold = before["retraining"]["threshold"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.upload_labelled",
            "--api",
            base,
            "--model",
            "chest-ct",
            "--label",
            "normal",
            "--copies",
            str(threshold),
            "events/images/chest-ct-normal.png",
        ],
        cwd=REPO_ROOT,
        check=True,
        timeout=120,
        env={**os.environ, "LOCAL_STATE_DIR": str(state_dir)},
    )
    job = wait_for(
        lambda: (
            (jobs := requests.get(f"{base}/models/chest-ct", headers=auth, timeout=60).json()["retraining"]["jobs"])
            and jobs[0]["state"] in ("Completed", "Failed")
            and jobs[0]
        ),
        300,
        "the retraining job",
        interval=1,
    )
    assert (job["trigger"], job["state"], job["outcome"]) == ("uploads", "Completed", "promoted"), job

    def served_version():
        return requests.post(
            f"{base}/models/chest-ct/predict",
            data=chest_ct.example_image("normal"),
            headers={"Content-Type": "image/png", **auth},
            timeout=60,
        ).json()["version"]

    wait_for(lambda: served_version() == job["version"] != before["production_version"], 60, "the new version")


def test_make_run_serves_and_restarts_without_retraining(tmp_path):
    moto_port, api_port = free_port(), free_port()
    env_file = tmp_path / "env.json"
    local = json.loads((REPO_ROOT / "events" / "env.json").read_text())["Parameters"]
    env_file.write_text(
        json.dumps(
            {
                "Parameters": {
                    **local,
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
                    "MODELS_BUCKET": "models-make-run",
                    # --quick-train publishes smoke-trained models: the retrain fine-tunes them on the same smoke set.
                    "RETRAIN_HYPERPARAMETERS": json.dumps({"smoke": "true"}),
                }
            }
        )
    )
    state = tmp_path / "state"

    first = start_stack(env_file, state, api_port, tmp_path / "first.log")
    try:
        base = f"http://127.0.0.1:{api_port}"
        clinician, admin = sign_in("clinician", state), sign_in("ml-admin", state)
        # Who may call what, on make run as on AWS: anonymous writes 401, a clinician's retrain 403.
        upload = {"label": "normal", "content_type": "image/png"}
        assert requests.post(f"{base}/models/chest-ct/uploads", json=upload, timeout=60).status_code == 401
        assert requests.post(f"{base}/models/chest-ct/retrain", json={}, timeout=60).status_code == 401
        refused = requests.post(f"{base}/models/chest-ct/retrain", json={}, headers=clinician, timeout=60)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", refused.text
        served = predict(api_port, clinician)
        assert served["predictions"][0]["label"] == "malignant"
        page = requests.get(f"http://127.0.0.1:{api_port}/", timeout=60)  # the web page (tests/browser drives it)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html"), page.text[:300]
        assert "NOT FOR CLINICAL USE" in page.text
        assert f"http://127.0.0.1:{moto_port}" in page.headers["Content-Security-Policy"]  # presigned POSTs go there
        assert f"web page    http://127.0.0.1:{api_port}/" in (tmp_path / "first.log").read_text()
        models = requests.get(f"http://127.0.0.1:{api_port}/models", headers=clinician, timeout=60).json()["models"]
        assert sorted(m["model"] for m in models) == ["breast-cancer", "breast-cancer-lite", "chest-ct", "skin-lesion"]
        assert all(m["production_version"] for m in models)
        for model_id, data in (("skin-lesion", ham10000), ("chest-ct", chest_ct)):
            label = data.CLASSES[-1]
            answer = requests.post(
                f"http://127.0.0.1:{api_port}/models/{model_id}/predict",
                data=data.example_image(label),
                headers={"Content-Type": "image/png", **clinician},
                timeout=60,
            )
            assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == label, answer.text
        assert_every_check_passes(base)  # `make smoke`, the deploy's smoke test, against make run
        retrain_as_the_readme_shows(api_port, admin, state)
    finally:
        stop_stack(first)
    first_log = (tmp_path / "first.log").read_text()
    assert (
        "no published version, training it now" in first_log
        and sum("gate PASSED" in line for line in first_log.splitlines() if not line.startswith("[job ")) == 4
    )
    # Each converter published a model in this run, with its parity figure in the manifest.
    from mlflow import MlflowClient

    mlflow_client = MlflowClient(tracking_uri=f"sqlite:///{state}/mlflow/mlflow.db")
    converters = {}
    for model_id in ("breast-cancer", "breast-cancer-lite", "chest-ct", "skin-lesion"):
        folder = state / "s3" / "models-make-run" / "models" / model_id
        pointer = json.loads((folder / "production.json").read_text())
        manifest = json.loads((folder / pointer["version"] / "manifest.json").read_text())
        converters.update(manifest["converter"])
        assert manifest["parity"]["label_mismatches"] == 0 and manifest["parity"]["max_abs_prob_diff"] <= 1e-4
        logged = mlflow_client.get_run(manifest["mlflow"]["run_id"]).data.metrics
        assert logged["parity_max_abs_prob_diff"] == pytest.approx(manifest["parity"]["max_abs_prob_diff"])
        assert logged["parity_label_mismatches"] == 0
    assert {"skl2onnx", "tf2onnx", "torch.onnx"} <= set(converters)
    assert (state / "mlflow" / "mlflow.db").exists()
    mirrored = state / "s3" / "models-make-run" / "models" / "breast-cancer"
    assert (mirrored / "production.json").exists()
    assert (mirrored / served["version"] / "model.onnx").exists()

    second = start_stack(env_file, state, api_port, tmp_path / "second.log")
    try:
        assert predict(api_port, sign_in("clinician", state))["version"] == served["version"]
    finally:
        stop_stack(second)
    second_log = (tmp_path / "second.log").read_text()
    assert "production version present" in second_log and "training it now" not in second_log
