"""boto3 clients for the adapters: made on first use, pointed at the endpoint the function's
settings name (moto locally; none on AWS)."""

from __future__ import annotations


def aws_client(service: str, endpoint_url: str | None = None, **options):
    import boto3  # deferred: importing boto3 costs cold-start time

    return boto3.client(service, endpoint_url=endpoint_url or None, **options)


class ServiceAdapter:
    """An adapter over one AWS service. Its boto3 client is made on first use (boto3 and
    clients cost cold-start time) unless one is passed in (tests, moto)."""

    service: str
    client_options: dict = {}

    def __init__(self, client=None, endpoint_url: str | None = None):
        self._client = client
        self.endpoint_url = endpoint_url

    @property
    def client(self):
        if self._client is None:
            self._client = aws_client(self.service, self.endpoint_url, **self.client_options)
        return self._client
