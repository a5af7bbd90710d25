"""SageMaker and AWS Batch for the local stack: the training jobs moto records are run here, as local processes.

moto records CreateTrainingJob and SubmitJob but runs nothing (its statuses jump straight to the end).
``LocalTrainingJobs`` finds the jobs created after ``start()``, runs them one at a time under the job contract
(training/job_contract.py) and delivers the services' EventBridge state-change events to the template's functions
whose rules match, as EventBridge would.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3

from med_classifier.adapters.launchers import IMAGE_COMMAND, IMAGE_ENTRY_POINT
from scripts.local_runner.api import LocalFunctions
from scripts.local_runner.event_sources import deliver_event, event_rules
from scripts.local_runner.moto_service import STATUS_PATH
from training.job_contract import JobPaths, stage

LOG = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SAGEMAKER, BATCH = "sagemaker", "batch"
ACCOUNT_ID = "123456789012"  # moto's
# The training image's ENTRYPOINT, run by this interpreter.
DEFAULT_ENTRY_POINT = (sys.executable, *IMAGE_ENTRY_POINT[1:])
# What a job process gets from the runner's environment (what any process needs, the same import path as the
# runner's, and where the caller keeps local state such as MLflow's store); the rest is the job's own environment
# and the local AWS settings.
HOST_VARIABLES = (
    "PATH",
    "PYTHONPATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LD_LIBRARY_PATH",
    "TMPDIR",
    "LOCAL_STATE_DIR",
    "MLFLOW_TRACKING_URI",
)
SAGEMAKER_DETAIL_KEYS = (
    "TrainingJobName",
    "TrainingJobArn",
    "HyperParameters",
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
)
BATCH_DETAIL_KEYS = (
    "jobArn",
    "jobName",
    "jobId",
    "jobQueue",
    "jobDefinition",
    "parameters",
    "dependsOn",
    "createdAt",
    "timeout",
    "tags",
)
BATCH_EXIT_REASON = "Essential container in task exited"
BATCH_TIMEOUT_REASON = "Job attempt duration exceeded timeout"


@dataclass
class JobRecord:
    """One job the runner ran; ``status`` is the final status as the service reports it."""

    name: str
    backend: str  # SAGEMAKER or BATCH
    job_id: str  # the training job's ARN, the Batch job's id
    status: str = ""
    exit_code: int | None = None  # as a container reports it: 128 + signal when killed
    reason: str = ""  # FailureReason / the job's failure file
    started_at: float | None = None  # epoch seconds
    ended_at: float | None = None


class LocalTrainingJobs:
    """Runs the SageMaker training jobs and Batch jobs created in moto (at ``endpoint_url``) after ``start()``.

    Both run the image's ``entry_point`` with what the service passes it: SageMaker jobs with "train", in a fresh
    job root staged from the job's HyperParameters and S3 channels; Batch jobs with their container command (which
    replaces the image's CMD) and environment.
    Both get ML_ROOT, moto's endpoint and dummy credentials (or ``credentials``: the training role's, with IAM
    enforced: scripts/local_iam.py), LOCAL_STATE_DIR (and MLFLOW_TRACKING_URI) when the runner has them, and run
    in ``repo_root``.
    """

    def __init__(
        self,
        functions: LocalFunctions,
        endpoint_url: str,
        entry_point: Sequence[str] = DEFAULT_ENTRY_POINT,
        poll_seconds: float = 1.0,
        region: str = "us-east-1",
        repo_root: Path = REPO_ROOT,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.entry_point = list(entry_point)
        self.poll_seconds = poll_seconds
        self.region = region
        self.repo_root = repo_root
        self.jobs: list[JobRecord] = []
        self._functions = functions
        self._rules = event_rules(functions.stacks)
        self._aws_environment = {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            # The training role's, when given (scripts/local_iam.py): a job may do what SageMaker's would.
            **(credentials or {}),
        }
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
        )
        self._sagemaker = session.client("sagemaker", endpoint_url=endpoint_url)
        self._batch = session.client("batch", endpoint_url=endpoint_url)
        self._s3 = session.client("s3", endpoint_url=endpoint_url)
        self._seen: set[tuple[str, str]] = set()
        self._process: subprocess.Popen | None = None
        self._process_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._polls = 0
        self._polled = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Remembers the jobs that exist now (they are not run) and starts polling."""
        # Otherwise moto runs Batch jobs in Docker itself, or fails them at once without Docker.
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/config",
            data=json.dumps({"batch": {"use_docker": False}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()
        self._seen = set(self._list_jobs())
        self._thread = threading.Thread(target=self._loop, name="training-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops polling and kills the job that is running, if any."""
        self._stop.set()
        self._wake.set()
        with self._process_lock:
            if self._process is not None and self._process.poll() is None:
                os.killpg(self._process.pid, signal.SIGKILL)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wait_idle(self, timeout: float) -> bool:
        """Waits until every job created before this call has run; False if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._polled:
            # The poll in progress may have listed the jobs before this call; the one after it has not.
            target = self._polls + 2
            while self._polls < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._polled.wait(remaining)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_new_jobs()
            except Exception:  # e.g. moto going away at shutdown: keep polling rather than die silently
                LOG.exception("Running training jobs from %s failed", self.endpoint_url)
            with self._polled:
                self._polls += 1
                self._polled.notify_all()
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _run_new_jobs(self) -> None:
        listed = self._list_jobs()
        for key in sorted(listed.keys() - self._seen, key=listed.get):
            if self._stop.is_set():
                return
            self._seen.add(key)
            backend, job_id = key
            if backend == SAGEMAKER:
                self._run_training_job(job_id)
            else:
                self._run_batch_job(job_id)

    def _list_jobs(self) -> dict[tuple[str, str], int]:
        """(backend, training job name or Batch job id) → creation time in epoch milliseconds, for every job."""
        jobs = {}
        for page in self._sagemaker.get_paginator("list_training_jobs").paginate():
            for summary in page["TrainingJobSummaries"]:
                jobs[SAGEMAKER, summary["TrainingJobName"]] = _epoch_ms(summary["CreationTime"].timestamp())
        for queues in self._batch.get_paginator("describe_job_queues").paginate():
            for queue in queues["jobQueues"]:
                # With a filter, ListJobs returns the jobs in every status rather than the RUNNING ones.
                pages = self._batch.get_paginator("list_jobs").paginate(
                    jobQueue=queue["jobQueueArn"], filters=[{"name": "JOB_NAME", "values": ["*"]}]
                )
                for page in pages:
                    for summary in page["jobSummaryList"]:
                        jobs[BATCH, summary["jobId"]] = summary["createdAt"]
        return jobs

    def _run_training_job(self, name: str) -> None:
        job = self._sagemaker.describe_training_job(TrainingJobName=name)
        record = JobRecord(name, SAGEMAKER, job["TrainingJobArn"], started_at=time.time())
        self.jobs.append(record)
        self._sagemaker_event(job, record, "InProgress", "Starting")
        channels = {
            channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"]
            for channel in job.get("InputDataConfig", [])
        }
        max_seconds = job.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
        with tempfile.TemporaryDirectory(prefix=f"ml-{name}-") as root:
            paths = JobPaths(Path(root))
            try:
                stage(paths, self._s3, job.get("HyperParameters", {}), channels)
            except Exception as error:
                status, secondary, record.reason = "Failed", "Failed", f"ClientError: Data download failed: {error}"
            else:
                timed_out = self._execute(record, [*self.entry_point, *IMAGE_COMMAND], {"ML_ROOT": root}, max_seconds)
                if timed_out:
                    status, secondary = "Stopped", "MaxRuntimeExceeded"
                    record.reason = f"Training job exceeded MaxRuntimeInSeconds ({max_seconds} s)"
                elif record.exit_code == 0:
                    status = secondary = "Completed"
                else:
                    status = secondary = "Failed"
                    record.reason = _failure(paths) or f"AlgorithmError: the job exited with code {record.exit_code}"
        record.status, record.ended_at = status, time.time()
        self._sagemaker_event(job, record, status, secondary)

    def _run_batch_job(self, job_id: str) -> None:
        job = self._batch.describe_jobs(jobs=[job_id])["jobs"][0]
        record = JobRecord(job["jobName"], BATCH, job_id)
        self.jobs.append(record)
        container = job.get("container", {})
        command = [*self.entry_point, *container.get("command", IMAGE_COMMAND)]
        environment = _batch_environment(job)
        max_seconds = job.get("timeout", {}).get("attemptDurationSeconds")
        for status in ("RUNNABLE", "STARTING"):
            self._batch_event(job, record, status)
        record.started_at = time.time()
        self._batch_event(job, record, "RUNNING")
        with tempfile.TemporaryDirectory(prefix=f"batch-{record.name}-") as root:
            timed_out = self._execute(record, command, {**environment, "ML_ROOT": root}, max_seconds)
            failure = _failure(JobPaths(Path(root)))
        record.status = "SUCCEEDED" if record.exit_code == 0 and not timed_out else "FAILED"
        record.reason = BATCH_TIMEOUT_REASON if timed_out else failure
        record.ended_at = time.time()
        if timed_out:
            self._batch_event(job, record, record.status, BATCH_TIMEOUT_REASON)
        else:
            self._batch_event(job, record, record.status, BATCH_EXIT_REASON, container_reason=failure)

    def _execute(
        self, record: JobRecord, command: list[str], environment: dict[str, str], max_seconds: int | None
    ) -> bool:
        """Runs the job's process to its end, its output prefixed on stderr; True if it ran out of time."""
        environment = {
            **{name: os.environ[name] for name in HOST_VARIABLES if name in os.environ},
            **environment,
            **self._aws_environment,  # last: a job must not reach real AWS
            "PYTHONUNBUFFERED": "1",  # job output appears as it is written
        }
        print(f"[job {record.name}] {record.backend} job starting: {' '.join(command)}", file=sys.stderr, flush=True)
        try:
            with self._process_lock:
                if self._stop.is_set():
                    raise OSError("the local runner is stopping")
                self._process = process = subprocess.Popen(
                    command,
                    cwd=self.repo_root,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group, killed as a whole
                )
        except OSError as error:
            print(f"[job {record.name}] could not start: {error}", file=sys.stderr, flush=True)
            record.exit_code = 127  # what a container reports for a command it cannot run
            return False
        pump = threading.Thread(target=_prefix_output, args=(process.stdout, record.name), daemon=True)
        pump.start()
        timed_out = False
        try:
            process.wait(timeout=max_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with self._process_lock:
            self._process = None
        pump.join()
        code = process.returncode
        record.exit_code = code if code >= 0 else 128 - code
        print(f"[job {record.name}] exited with code {record.exit_code}", file=sys.stderr, flush=True)
        return timed_out

    def _sagemaker_event(self, job: dict, record: JobRecord, status: str, secondary: str) -> None:
        detail = {key: job[key] for key in SAGEMAKER_DETAIL_KEYS if key in job}
        detail.update(
            TrainingJobStatus=status,
            SecondaryStatus=secondary,
            CreationTime=_epoch_ms(job["CreationTime"].timestamp()),
            TrainingStartTime=_epoch_ms(record.started_at),
            LastModifiedTime=_epoch_ms(time.time()),
        )
        if record.ended_at is not None:
            detail["TrainingEndTime"] = _epoch_ms(record.ended_at)
        if record.reason:
            detail["FailureReason"] = record.reason
        self._report_status(
            {"backend": SAGEMAKER, "name": record.name, "status": status, "secondary_status": secondary}
            | ({"reason": record.reason} if record.reason else {})
        )
        self._deliver("aws.sagemaker", "SageMaker Training Job State Change", record.job_id, detail)

    def _batch_event(
        self, job: dict, record: JobRecord, status: str, status_reason: str = "", container_reason: str = ""
    ) -> None:
        """``status_reason`` marks the final event, which carries the exit code and end time."""
        container = {
            **job.get("container", {}),
            "environment": [{"name": k, "value": v} for k, v in _batch_environment(job).items()],
        }
        detail = {key: job[key] for key in BATCH_DETAIL_KEYS if key in job}
        detail.update(status=status, container=container, attempts=[])
        if record.started_at is not None:
            detail["startedAt"] = _epoch_ms(record.started_at)
        if status_reason:
            attempt_container = {"exitCode": record.exit_code}
            if container_reason:
                attempt_container["reason"] = container_reason
            container.update(attempt_container)
            detail.update(statusReason=status_reason, stoppedAt=_epoch_ms(record.ended_at))
            detail["attempts"] = [
                {
                    "container": attempt_container,
                    "startedAt": detail["startedAt"],
                    "stoppedAt": detail["stoppedAt"],
                    "statusReason": status_reason,
                }
            ]
        self._report_status(
            {"backend": BATCH, "name": job["jobId"], "status": status}
            | ({"reason": status_reason} if status_reason else {})
        )
        self._deliver("aws.batch", "Batch Job State Change", job["jobArn"], detail)

    def _report_status(self, report: dict) -> None:
        """Tells moto the job's real status (moto_service.py), so DescribeTrainingJob and DescribeJobs,
        which the scheduled reconciler asks, agree with the events."""
        request = urllib.request.Request(
            f"{self.endpoint_url}{STATUS_PATH}",
            data=json.dumps({**report, "region": self.region}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except OSError as error:  # a plain moto server has no such route: its statuses stay moto's
            LOG.warning("Could not report %s's status to %s: %s", report["name"], self.endpoint_url, error)

    def _deliver(self, source: str, detail_type: str, resource: str, detail: dict) -> None:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [resource],
            "detail": detail,
        }
        deliver_event(self._functions, self._rules, event)


def _prefix_output(stream, name: str) -> None:
    with stream:
        for line in stream:
            sys.stderr.write(f"[job {name}] {line.decode(errors='replace').rstrip()}\n")
            sys.stderr.flush()


def _batch_environment(job: dict) -> dict[str, str]:
    # A dict: moto repeats AWS_BATCH_JOB_ID in the job's environment each time the job is described.
    return {variable["name"]: variable["value"] for variable in job.get("container", {}).get("environment", [])}


def _failure(paths: JobPaths) -> str:
    return paths.failure.read_text().strip() if paths.failure.is_file() else ""


def _epoch_ms(seconds: float) -> int:
    return int(seconds * 1000)
