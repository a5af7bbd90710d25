"""Every adapter talks to the endpoint its function's settings name (moto locally), or to
AWS's own when none is set. Clients are made on first use; no request is sent here."""

from __future__ import annotations

import pytest

from med_classifier.adapters.jobs_table import JobsTable
from med_classifier.adapters.launch_settings import LaunchSettings
from med_classifier.adapters.launchers import launcher_for
from med_classifier.adapters.model_store import ModelStore
from med_classifier.adapters.s3_uploads import S3UploadSigner
from med_classifier.adapters.upload_counter import UploadCounter

ENDPOINT = "http://127.0.0.1:5999"
LAUNCH = LaunchSettings(backend="sagemaker", uploads_bucket="u", models_bucket="m", jobs_table="j")


@pytest.fixture(autouse=True)
def region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


ADAPTERS = {
    "model store": lambda endpoint: ModelStore("m", endpoint_url=endpoint),
    "upload counter": lambda endpoint: UploadCounter("c", endpoint_url=endpoint),
    "jobs table": lambda endpoint: JobsTable("j", endpoint_url=endpoint),
    "upload signer": lambda endpoint: S3UploadSigner("u", endpoint_url=endpoint),
    "sagemaker launcher": lambda endpoint: launcher_for(LAUNCH, endpoint_url=endpoint),
}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_an_adapter_uses_the_endpoint_it_is_given(name):
    assert ADAPTERS[name](ENDPOINT).client.meta.endpoint_url == ENDPOINT


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_without_an_endpoint_an_adapter_talks_to_aws(name):
    assert ADAPTERS[name](None).client.meta.endpoint_url.endswith(".amazonaws.com")


def test_the_upload_signer_signs_with_signature_v4():
    assert S3UploadSigner("u", endpoint_url=ENDPOINT).client.meta.config.signature_version == "s3v4"


def test_a_batch_launcher_is_made_for_the_batch_backend():
    batch = launcher_for(LaunchSettings(backend="batch", uploads_bucket="u", models_bucket="m", jobs_table="j"))
    assert (batch.backend, type(batch).__name__) == ("batch", "BatchLauncher")
