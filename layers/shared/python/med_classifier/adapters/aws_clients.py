"""boto3 clients for the adapters: made on first use, pointed at the endpoint the function's
settings name (moto locally; none on AWS)."""

from __future__ import annotations

import weakref


def aws_client(service: str, endpoint_url: str | None = None, **options):
    import boto3  # deferred: importing boto3 costs cold-start time

    return boto3.client(service, endpoint_url=endpoint_url or None, **options)


# Every adapter alive in this process, so that a SnapStart restore can replace their clients at once.
_ADAPTERS: weakref.WeakSet[ServiceAdapter] = weakref.WeakSet()


class ServiceAdapter:
    """An adapter over one AWS service. Its boto3 client is made on first use (boto3 and
    clients cost cold-start time) unless one is passed in (tests, moto)."""

    service: str
    client_options: dict = {}

    def __init__(self, client=None, endpoint_url: str | None = None):
        self._client = client
        self._makes_its_client = client is None
        self.endpoint_url = endpoint_url
        _ADAPTERS.add(self)

    @property
    def client(self):
        if self._client is None:
            self._client = aws_client(self.service, self.endpoint_url, **self.client_options)
        return self._client

    def forget_client(self) -> bool:
        """Drops the client this adapter made (its pooled connections and cached credentials); the next
        call makes a new one. A client passed in is kept. Returns whether a client was dropped."""
        dropped = self._makes_its_client and self._client is not None
        if dropped:
            self._client = None
        return dropped


class BucketAdapter(ServiceAdapter):
    """An adapter over one S3 bucket."""

    service = "s3"

    def __init__(self, bucket: str, client=None, endpoint_url: str | None = None):
        super().__init__(client, endpoint_url)
        self.bucket = bucket


def make_clients() -> None:
    """SnapStart's before-snapshot step: every adapter makes its client now, so boto3 and the services'
    models are loaded in the snapshot (forget_clients then drops the clients, not what they loaded)."""
    for adapter in list(_ADAPTERS):
        _ = adapter.client


def forget_clients() -> int:
    """SnapStart's after-restore step: every adapter makes a new client at its next call, so no restored
    instance reuses a connection opened before the snapshot (or another instance's). Returns how many
    clients were dropped."""
    return sum(adapter.forget_client() for adapter in list(_ADAPTERS))
