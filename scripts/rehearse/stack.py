"""The rehearsal's moto: package the template into its bucket, create the stack, read it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.local_resources import REGION
from scripts.local_stack import LOCAL_CREDENTIALS, MotoServer, aws_client, free_port

ARTIFACT_BUCKET = "rehearsal-artifacts"
STACK_NAME = "med-classifier"  # samconfig.toml's stack_name
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
IN_PROGRESS = ("CREATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS")


def sam_executable() -> str:
    """SAM CLI of the interpreter's virtualenv (not whatever `sam` is on PATH)."""
    return str(Path(sys.executable).with_name("sam"))


def start_moto() -> MotoServer:
    """A fresh moto server on a free port of localhost (a host moto's S3 reads path-style: the bucket is
    the path's first part, as SAM CLI sends it)."""
    server = MotoServer(port=free_port(), host="localhost")
    server.module = "moto.server"  # plain moto: no job-status route (scripts.local_runner.moto_service) needed
    return server.start()


def package(template: Path, endpoint: str, output: Path) -> Path:
    """`sam package` into the moto bucket: every local CodeUri and ContentUri zipped and uploaded, the
    template rewritten to their S3 URIs. No build (a makefile layer's zip holds its Makefile only)."""
    aws_client("s3", endpoint).create_bucket(Bucket=ARTIFACT_BUCKET)
    env = {**os.environ, **LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "SAM_CLI_TELEMETRY": "0"}
    env.pop("AWS_PROFILE", None)
    command = [
        sam_executable(),
        "package",
        "--template-file",
        str(template),
        "--s3-bucket",
        ARTIFACT_BUCKET,
        "--output-template-file",
        str(output),
        "--region",
        REGION,
        "--no-progressbar",
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if completed.returncode != 0:
        raise RuntimeError(f"sam package failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return output


@dataclass
class LiveStack:
    name: str
    status: str
    reason: str
    resources: dict[str, dict] = field(default_factory=dict)  # logical id -> StackResourceSummary
    outputs: dict[str, str] = field(default_factory=dict)  # output key -> value
    blank_rows: int = 0  # rows moto lists without a logical id (it gives one for resources it skipped)


def create_stack(endpoint: str, template: dict, timeout: float = 120.0) -> LiveStack:
    """create_stack, then polls until the stack leaves *_IN_PROGRESS (or `timeout` passes)."""
    cloudformation = aws_client("cloudformation", endpoint)
    cloudformation.create_stack(StackName=STACK_NAME, TemplateBody=json.dumps(template), Capabilities=CAPABILITIES)
    deadline = time.monotonic() + timeout
    while True:
        [stack] = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"]
        if stack["StackStatus"] not in IN_PROGRESS:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{STACK_NAME} still {stack['StackStatus']} after {timeout:.0f} s")
        time.sleep(0.2)
    paginator = cloudformation.get_paginator("list_stack_resources")
    summaries = [s for page in paginator.paginate(StackName=STACK_NAME) for s in page["StackResourceSummaries"]]
    resources = {s["LogicalResourceId"]: s for s in summaries if s.get("LogicalResourceId")}
    outputs = {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])}
    blank = len(summaries) - len(resources)
    return LiveStack(STACK_NAME, stack["StackStatus"], stack.get("StackStatusReason", ""), resources, outputs, blank)
