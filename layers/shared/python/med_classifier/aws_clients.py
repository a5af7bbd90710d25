"""boto3 clients that honour AWS_ENDPOINT_URL (moto locally; empty on AWS)."""

from __future__ import annotations

import os


def aws_client(service: str, **options):
    import boto3  # deferred: importing boto3 costs cold-start time

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    if endpoint is None:
        # An empty AWS_ENDPOINT_URL (the template default) would make botocore fail.
        os.environ.pop("AWS_ENDPOINT_URL", None)
    return boto3.client(service, endpoint_url=endpoint, **options)


class ServiceAdapter:
    """An adapter over one AWS service. Its boto3 client is made on first use (boto3 and
    clients cost cold-start time) unless one is passed in (tests, moto)."""

    service: str

    def __init__(self, client=None):
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = aws_client(self.service)
        return self._client
