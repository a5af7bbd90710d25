"""A retrain from uploads that wins, end to end under the local stack: README's upload script sends
five labelled skin-lesion images, the job fine-tunes production's published native weights (the
smoke schedule here: the stack's production versions are smoke-trained; make run's jobs run the
full one), is promoted, its record shows the per-metric deltas against the champion, and predict
answers with the new version. (Before fine-tuning, such a job trained a smaller model from scratch
and lost to production: macro F1 0.974 < 1.000.)"""

import os
import subprocess
import sys
import time

from tests.e2e.conftest import RETRAIN_THRESHOLDS
from tests.helpers.models import REPO_ROOT
from tests.helpers.polling import wait_for
from tests.helpers.retraining_http import ended_job, model_view, served_version
from training import skin_lesion
from training.datasets import ham10000

MODEL = "skin-lesion"
THRESHOLD = RETRAIN_THRESHOLDS[MODEL]
IMAGE = REPO_ROOT / "events" / "images" / "skin-lesion-mel.png"
JOB_TIMEOUT = 600


def test_a_retrain_from_uploads_fine_tunes_production_and_is_promoted(stack):
    before = wait_for(
        lambda: (view := model_view(stack, MODEL))["retraining"]["active_job"] is None and view,
        JOB_TIMEOUT,
        "no skin-lesion job to be running before the uploads",
    )
    production, counter = before["production_version"], before["retraining"]
    assert counter["threshold"] == THRESHOLD
    published = stack["store"].read_manifest(MODEL, production)
    assert published.native_weights is not None  # what the job will start from
    jobs_before = {job["job_id"] for job in counter["jobs"]}

    # README's script, signed in as the clinician (the token through the environment, not the command line).
    copies = THRESHOLD - counter["uploads_since_last_job"]
    command = [sys.executable, "-m", "scripts.upload_labelled", "--api", stack["url"], "--model", MODEL]
    subprocess.run(
        [*command, "--label", "mel", "--copies", str(copies), str(IMAGE)],
        cwd=REPO_ROOT,
        check=True,
        timeout=120,
        env={**os.environ, "MED_CLASSIFIER_TOKEN": stack["tokens"]["clinician"]},
    )
    uploaded_at = time.monotonic()
    started = wait_for(
        lambda: [job for job in model_view(stack, MODEL)["retraining"]["jobs"] if job["job_id"] not in jobs_before],
        60,
        "the uploads to start one job",
    )
    assert len(started) == 1 and started[0]["trigger"] == "uploads", started
    job_id = started[0]["job_id"]

    finished = ended_job(stack, MODEL, job_id, JOB_TIMEOUT)
    assert (finished["state"], finished["outcome"]) == ("Completed", "promoted"), finished
    assert finished["fine_tuned_from"] == finished["production_version"] == production
    deltas = finished["deltas"]
    gated = set(skin_lesion.DEFAULT_GATE.minimums)
    assert gated <= set(deltas) and all(deltas[name] >= 0 for name in gated), deltas
    assert set(deltas) <= set(finished["metrics"])
    # The model view's recent jobs show the same record.
    (listed,) = [job for job in model_view(stack, MODEL)["retraining"]["jobs"] if job["job_id"] == job_id]
    assert listed["deltas"] == deltas and listed["fine_tuned_from"] == production

    new_version = finished["version"]
    png = ham10000.example_image("mel")
    wait_for(lambda: served_version(stack, MODEL, png) == new_version, 60, "predict to answer with the new version")
    manifest = stack["store"].read_manifest(MODEL, new_version)
    assert manifest.training_data.n_uploads >= copies
    assert len(stack["store"].read_native_weights(manifest)) == manifest.native_weights.size_bytes  # the next start
    print(
        f"\n[retrain] skin-lesion: uploads -> fine-tuned version serving in {time.monotonic() - uploaded_at:.1f} s; "
        f"deltas {', '.join(f'{name} {deltas[name]:+.4f}' for name in sorted(gated))}"
    )
