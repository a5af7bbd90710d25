"""moto in server mode, with what the local emulation needs from it and moto lacks: job statuses
that tell the truth, and CodeDeploy's lifecycle-hook status (the PreTraffic hook's report).

moto records CreateTrainingJob and SubmitJob but runs nothing: its training jobs are Completed
the moment they are created, and its Batch jobs try Docker and fail. The runner runs the jobs
itself (training_jobs.py) and reports each job's status here (POST /_local/job-status), so
DescribeTrainingJob and DescribeJobs, which the scheduled reconciler asks, answer what the
local job is really doing.

moto has no PutLifecycleEventHookExecutionStatus. Here it ends the deployment (moto's): Failed when
the hook reports Failed, else Succeeded, as CodeDeploy would once the traffic has shifted; there is no
traffic to shift locally. Run as ``python -m scripts.local_runner.moto_service -H host -p port``.
"""

import json
import sys

from moto import server
from moto.batch import models as batch_models
from moto.codedeploy import models as codedeploy_models
from moto.moto_api import state_manager
from moto.sagemaker import models as sagemaker_models

STATUS_PATH = "/_local/job-status"
ACCOUNT_ID = "123456789012"  # moto's


def _training_jobs_start_in_progress() -> None:
    created = sagemaker_models.FakeTrainingJob.__init__

    def init(self, *args, **kwargs):
        created(self, *args, **kwargs)
        self.training_job_status, self.secondary_status = "InProgress", "Starting"

    sagemaker_models.FakeTrainingJob.__init__ = init


def _batch_jobs_wait_for_the_runner() -> None:
    batch_models.Job.run = lambda self: None  # no Docker: the runner runs the job
    # Status changes only when the runner reports one (never by moto's own progression).
    state_manager.set_transition("batch::job", {"progression": "manual", "times": 10**9})


def set_job_status(report: dict) -> None:
    """{"backend": "sagemaker"|"batch", "region", "name" (training job name / Batch job id),
    "status", "reason" (optional), "secondary_status" (SageMaker, optional)}"""
    region = report.get("region", "us-east-1")
    if report["backend"] == "sagemaker":
        job = sagemaker_models.sagemaker_backends[ACCOUNT_ID][region].training_jobs[report["name"]]
        job.training_job_status = report["status"]
        job.secondary_status = report.get("secondary_status") or report["status"]
        if report.get("reason"):
            job.failure_reason = report["reason"]
    else:
        job = batch_models.batch_backends[ACCOUNT_ID][region].get_job_by_id(report["name"])
        job._status = report["status"]
        if report.get("reason"):
            job.job_stopped_reason = report["reason"]


HOOK_STATUS_TARGET = "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus"
HOOK_STATUSES = ("Succeeded", "Failed")


def put_hook_status(region: str, request: dict) -> tuple[str, dict]:
    """A PutLifecycleEventHookExecutionStatus call: (HTTP status, JSON answer)."""
    deployment_id, status = request.get("deploymentId"), request.get("status")
    if status not in HOOK_STATUSES:
        return "400 Bad Request", {"__type": "InvalidLifecycleEventHookExecutionStatusException", "message": status}
    deployments = codedeploy_models.codedeploy_backends[ACCOUNT_ID][region].deployments
    if deployment_id not in deployments:
        return "400 Bad Request", {
            "__type": "DeploymentDoesNotExistException",
            "message": f"The deployment {deployment_id} does not exist with the user or AWS account.",
        }
    deployments[deployment_id].status = status
    return "200 OK", {"lifecycleEventHookExecutionId": request.get("lifecycleEventHookExecutionId")}


def _region(environ) -> str:
    # Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, ...
    credential = environ.get("HTTP_AUTHORIZATION", "").partition("Credential=")[2].split("/")
    return credential[2] if len(credential) > 2 else "us-east-1"


def _respond(start_response, status: str, body: bytes, content_type: str) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class LocalRoutes:
    """WSGI middleware: POST /_local/job-status sets a job's status, CodeDeploy's PutLifecycleEventHookExecutionStatus
    ends a deployment; everything else is moto."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if environ.get("HTTP_X_AMZ_TARGET") == HOOK_STATUS_TARGET:
            status, answer = put_hook_status(_region(environ), json.loads(environ["wsgi.input"].read(length) or b"{}"))
            return _respond(start_response, status, json.dumps(answer).encode(), "application/x-amz-json-1.1")
        if environ.get("PATH_INFO") != STATUS_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        try:
            set_job_status(json.loads(environ["wsgi.input"].read(length)))
            status, body = "204 No Content", b""
        except (AttributeError, KeyError, ValueError, TypeError) as exc:
            status, body = "404 Not Found", f"unknown job or bad report: {exc!r}".encode()
        return _respond(start_response, status, body, "text/plain")


def main(argv: list[str] | None = None) -> None:
    _training_jobs_start_in_progress()
    _batch_jobs_wait_for_the_runner()
    dispatcher = server.DomainDispatcherApplication

    class Dispatcher(dispatcher):  # moto's main() builds its app from this name
        def __call__(self, environ, start_response):
            return LocalRoutes(super().__call__)(environ, start_response)

    server.DomainDispatcherApplication = Dispatcher
    server.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
