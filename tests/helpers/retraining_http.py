"""What the e2e retraining tests ask the local stack over HTTP: a model's view, a job's status (and
its status once it has ended) and which version predict answers with."""

from __future__ import annotations

from tests.helpers.polling import wait_for


def model_view(stack, model: str) -> dict:
    response = stack["http"].get(f"{stack['url']}/models/{model}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def job_status(stack, model: str, job_id: str) -> dict:
    response = stack["http"].get(f"{stack['url']}/models/{model}/retrain/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def ended_job(stack, model: str, job_id: str, timeout: float) -> dict:
    """The job's status once it is Completed or Failed (polled every second until `timeout`)."""
    return wait_for(
        lambda: (status := job_status(stack, model, job_id))["state"] in ("Completed", "Failed") and status,
        timeout,
        f"job {job_id} to end",
        interval=1,
    )


def served_version(stack, model: str, png: bytes) -> str:
    response = stack["http"].post(
        f"{stack['url']}/models/{model}/predict", data=png, headers={"Content-Type": "image/png"}, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()["version"]
