"""moto in server mode, with the one thing the local training-job emulation needs from it:
job statuses that tell the truth.

moto records CreateTrainingJob and SubmitJob but runs nothing: its training jobs are Completed
the moment they are created, and its Batch jobs try Docker and fail. The runner runs the jobs
itself (training_jobs.py) and reports each job's status here (POST /_local/job-status), so
DescribeTrainingJob and DescribeJobs, which the scheduled reconciler asks, answer what the
local job is really doing. Run as ``python -m scripts.local_runner.moto_service -H host -p port``.
"""

import json
import sys

from moto import server
from moto.batch import models as batch_models
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


class JobStatusRoute:
    """WSGI middleware: POST /_local/job-status sets a job's status; everything else is moto."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != STATUS_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            set_job_status(json.loads(environ["wsgi.input"].read(length)))
            status, body = "204 No Content", b""
        except (AttributeError, KeyError, ValueError, TypeError) as exc:
            status, body = "404 Not Found", f"unknown job or bad report: {exc!r}".encode()
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


def main(argv: list[str] | None = None) -> None:
    _training_jobs_start_in_progress()
    _batch_jobs_wait_for_the_runner()
    dispatcher = server.DomainDispatcherApplication

    class Dispatcher(dispatcher):  # moto's main() builds its app from this name
        def __call__(self, environ, start_response):
            return JobStatusRoute(super().__call__)(environ, start_response)

    server.DomainDispatcherApplication = Dispatcher
    server.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
