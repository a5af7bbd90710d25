import boto3
import pytest
from moto import mock_aws

from med_classifier.adapters.model_store import ModelStore

BUCKET = "med-classifier-models-test"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def store(s3):
    return ModelStore(BUCKET, s3)
