"""The SageMaker training-container contract, as the retrain entry point sees it.

SageMaker copies each input channel to /opt/ml/input/data/<channel>/ (keys relative to
the channel's S3 prefix), writes the hyperparameters (all values strings) to
/opt/ml/input/config/hyperparameters.json, uploads /opt/ml/model/ when the job ends,
and reports the text of /opt/ml/output/failure as the job's FailureReason.

AWS Batch has no such staging: a Batch job gets the same information in environment
variables (RETRAIN_HYPERPARAMETERS, RETRAIN_CHANNELS: JSON) and `stage_from_environment`
lays it out exactly as SageMaker would, so the rest of the job cannot tell the two apart.
The root (/opt/ml) is overridable (ML_ROOT) for tests, Batch and the local runner.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from training.settings import training_settings


@dataclass(frozen=True)
class JobPaths:
    root: Path

    @classmethod
    def from_environment(cls) -> JobPaths:
        return cls(training_settings().ml_root)

    @property
    def hyperparameters(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"

    def read_hyperparameters(self) -> dict[str, str]:
        if not self.hyperparameters.is_file():
            return {}
        return {str(k): str(v) for k, v in json.loads(self.hyperparameters.read_text()).items()}

    def write_failure(self, reason: str) -> None:
        self.failure.parent.mkdir(parents=True, exist_ok=True)
        self.failure.write_text(reason[:1024])  # SageMaker keeps the first 1 KiB of FailureReason


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def download_prefix(s3, uri: str, target: Path) -> int:
    """Copies every object under an s3:// prefix into target/, keys relative to the
    prefix (what SageMaker's File input mode does). Returns the number of files."""
    bucket, prefix = split_s3_uri(uri)
    copied = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix) :].lstrip("/")
            if not relative or relative.endswith("/"):
                continue
            path = target / relative
            if target.resolve() not in path.resolve().parents:
                continue  # a key with ../ must not write outside the channel
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(path))
            copied += 1
    target.mkdir(parents=True, exist_ok=True)
    return copied


def stage(paths: JobPaths, s3, hyperparameters: dict, channels: dict[str, str]) -> dict[str, int]:
    """Lays out a job root as SageMaker does: hyperparameters.json and one folder per
    channel. Returns the number of files per channel."""
    paths.hyperparameters.parent.mkdir(parents=True, exist_ok=True)
    paths.hyperparameters.write_text(json.dumps({str(k): str(v) for k, v in hyperparameters.items()}))
    return {name: download_prefix(s3, uri, paths.channel(name)) for name, uri in channels.items()}


def stage_from_environment(paths: JobPaths, s3, environ: Mapping[str, str] | None = None) -> dict[str, int] | None:
    """Batch mode: stage from RETRAIN_HYPERPARAMETERS / RETRAIN_CHANNELS when set.
    Returns None when they are not set (SageMaker has staged the job already)."""
    settings = training_settings(environ)
    if settings.retrain_hyperparameters is None:
        return None
    return stage(paths, s3, settings.retrain_hyperparameters, settings.retrain_channels)
