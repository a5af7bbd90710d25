"""Starting a retraining job: SageMaker CreateTrainingJob or AWS Batch SubmitJob.

Both run the same training image and entry point (`python -m training.retrain`, see
training/job_contract.py) with the same hyperparameters and input channels:
`uploads` (s3://<uploads bucket>/uploads/<model>/, laid out <label>/<file>) and, when an
original-data prefix is configured, `original` (s3://<uploads bucket>/<prefix>/<model>/,
the data set's published layout; without it the job uses the deterministic synthetic set).
The backend is chosen by the template parameter RetrainBackend (RETRAIN_BACKEND); both
launchers implement the domain's Launcher Protocol.
"""

from __future__ import annotations

import json

from ..domain.jobs import JobRecord, JobRequest, JobStateChange
from ..domain.retraining import state_change_from_event
from .aws_clients import ServiceAdapter
from .launch_settings import BATCH, SAGEMAKER, LaunchSettings

# The training image (training/Dockerfile): ENTRYPOINT + CMD. SageMaker runs it with the
# argument "train"; a Batch job's command override replaces CMD, never the ENTRYPOINT.
IMAGE_ENTRY_POINT = ["python", "-m", "training.retrain"]
IMAGE_COMMAND = ["train"]


class _Launcher(ServiceAdapter):
    def __init__(self, settings: LaunchSettings, client=None, endpoint_url: str | None = None):
        super().__init__(client, endpoint_url)
        self.settings = settings


class SageMakerLauncher(_Launcher):
    backend = service = SAGEMAKER

    def request(self, job: JobRequest) -> dict:
        s = self.settings
        return {
            "TrainingJobName": job.job_id,
            "AlgorithmSpecification": {"TrainingImage": s.training_image, "TrainingInputMode": "File"},
            "RoleArn": s.role_arn,
            "HyperParameters": s.hyperparameters(job),
            "InputDataConfig": [
                {
                    "ChannelName": name,
                    "ContentType": "application/x-image" if name == "uploads" else "application/x-directory",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": uri,
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
                for name, uri in s.channels(job.model).items()
            ],
            "OutputDataConfig": {"S3OutputPath": s.output_uri},
            "ResourceConfig": {"InstanceType": s.instance_type, "InstanceCount": 1, "VolumeSizeInGB": s.volume_gb},
            "StoppingCondition": {"MaxRuntimeInSeconds": s.max_runtime_seconds},
            "Tags": [{"Key": "model", "Value": job.model}, {"Key": "job_id", "Value": job.job_id}],
            **({"Environment": s.environment()} if s.environment() else {}),
        }

    def start(self, job: JobRequest) -> str:
        # The training job's name, not its ARN: the ARN adds only the account id, which callers must not see.
        self.client.create_training_job(**self.request(job))
        return job.job_id

    def describe(self, job: JobRecord) -> JobStateChange | None:
        """The training job's state (its name is the job id); None if SageMaker does not know it."""
        from botocore.exceptions import ClientError

        try:
            described = self.client.describe_training_job(TrainingJobName=job.job_id)
        except ClientError as exc:
            # SageMaker answers an unknown training job with a ValidationException.
            if exc.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
                return None
            raise
        return state_change_from_event("aws.sagemaker", described)


class BatchLauncher(_Launcher):
    backend = service = BATCH

    def request(self, job: JobRequest) -> dict:
        s = self.settings
        environment = {
            "RETRAIN_HYPERPARAMETERS": json.dumps(s.hyperparameters(job), sort_keys=True),
            "RETRAIN_CHANNELS": json.dumps(s.channels(job.model), sort_keys=True),
            "ML_ROOT": "/tmp/ml",
            **s.environment(),
        }
        return {
            "jobName": job.job_id,
            "jobQueue": s.job_queue,
            "jobDefinition": s.job_definition,
            "containerOverrides": {
                "command": IMAGE_COMMAND,
                "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
            },
            "timeout": {"attemptDurationSeconds": s.max_runtime_seconds},
            "tags": {"model": job.model, "job_id": job.job_id},
        }

    def start(self, job: JobRequest) -> str:
        return self.client.submit_job(**self.request(job))["jobId"]

    def describe(self, job: JobRecord) -> JobStateChange | None:
        """The Batch job's state (by the id SubmitJob returned); None if Batch does not know it."""
        if not job.backend_job:
            return None
        found = self.client.describe_jobs(jobs=[job.backend_job]).get("jobs", [])
        return state_change_from_event("aws.batch", found[0]) if found else None


def launcher_for(
    settings: LaunchSettings, client=None, endpoint_url: str | None = None
) -> SageMakerLauncher | BatchLauncher:
    return (SageMakerLauncher if settings.backend == SAGEMAKER else BatchLauncher)(settings, client, endpoint_url)
