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
