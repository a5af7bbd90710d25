"""`make training-image`: build training/Dockerfile and push it to a stack's TrainingImageRepository.

    make training-image [ENV=staging] [TAG=<tag>] [REGION=<region>]

The stack is the one samconfig.toml names for the config env (ENV; `default` is med-classifier); its output
TrainingImageRepositoryUri is the repository. The tag is the short SHA of the last commit that changed what
the image is built from (IMAGE_INPUTS), so a deploy that changes no training code reuses the image already
pushed (the repository's tags are immutable: a tag is never pushed twice). Prints `TrainingImageTag=<tag>`
last: deploy with `--parameter-overrides TrainingImageTag=<tag>`. Without Docker or AWS credentials it says
which is missing and how to fix it, and exits 2. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.exceptions

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "training/Dockerfile"
# Everything training/Dockerfile copies (tests/unit/test_training_image.py keeps the two in step).
IMAGE_INPUTS = ("training", "layers/shared/python", "requirements.lock", "pyproject.toml")
LOCAL_NAME = "med-classifier-training"
OUTPUT = "TrainingImageRepositoryUri"
# SageMaker's and Batch's instances are x86_64, whatever machine builds the image.
PLATFORM = "linux/amd64"


class Refusal(Exception):
    """What is missing or wrong, in a sentence that says how to fix it (exit 2, no stack trace)."""


@dataclass(frozen=True)
class Stack:
    name: str
    region: str | None


# --- what the image is called --------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def image_tag(root: Path = REPO_ROOT) -> str:
    """The short SHA of the last commit that changed the image's inputs; refused while they have
    uncommitted changes (the image would not be what the tag names)."""
    if _git(root, "status", "--porcelain", "--", *IMAGE_INPUTS):
        raise Refusal(
            f"uncommitted changes to the training image's inputs ({', '.join(IMAGE_INPUTS)}): "
            "commit them, or name the image yourself with TAG=<tag>"
        )
    return _git(root, "log", "-1", "--format=%h", "--abbrev=12", "--", *IMAGE_INPUTS)


def stack_of(config_env: str, samconfig: Path) -> Stack:
    """The stack name and region samconfig.toml gives the config env (deploy's parameters, else global)."""
    env = tomllib.loads(samconfig.read_text()).get(config_env, {})
    sections = [env.get(command, {}).get("parameters", {}) for command in ("deploy", "global")]
    name = next((section["stack_name"] for section in sections if "stack_name" in section), None)
    if name is None:
        raise Refusal(
            f"{samconfig.name} has no stack_name for the config env '{config_env}' "
            f"([{config_env}.deploy.parameters] or [{config_env}.global.parameters])"
        )
    return Stack(name, next((section["region"] for section in sections if "region" in section), None))


# --- what must be there --------------------------------------------------------------------------------


def docker_problem(docker: str = "docker") -> str | None:
    """None when Docker's daemon answers, else what is missing and how to fix it."""
    try:
        answered = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True)
    except FileNotFoundError:
        return (
            f"Docker is not installed (no `{docker}` command): install Docker Engine or Docker Desktop, "
            "or run this where Docker is (the pipeline's training-image job)."
        )
    if answered.returncode != 0:
        return (
            "Docker's daemon is not reachable (`docker info` failed): start it (`sudo systemctl start docker`, "
            "or Docker Desktop) and check that you may use it, or run this where Docker runs "
            "(the pipeline's training-image job)."
        )
    return None


def credentials_problem(sts) -> str | None:
    """None when AWS accepts the credentials boto3 finds, else what is wrong and how to fix it."""
    try:
        sts.get_caller_identity()
    except botocore.exceptions.NoCredentialsError:
        return (
            "No AWS credentials: configure them (`aws configure`, `aws sso login`, AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); in the pipeline, "
            "aws-actions/configure-aws-credentials assumes the stage's role."
        )
    except botocore.exceptions.ClientError as error:
        return (
            f"AWS refused the credentials ({error.response['Error']['Code']}): renew them "
            "(`aws sso login`, or new keys) and try again."
        )
    return None


# --- the stack's repository ------------------------------------------------------------------------------


def repository_uri(cloudformation, stack: str) -> str:
    """The stack's TrainingImageRepositoryUri output."""
    try:
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    except botocore.exceptions.ClientError as error:
        if "does not exist" not in error.response["Error"]["Message"]:
            raise
        region = cloudformation.meta.region_name
        raise Refusal(
            f"stack {stack} does not exist in {region}: deploy it once first (make deploy), "
            "which creates its TrainingImageRepository"
        ) from None
    outputs = {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])}
    if OUTPUT not in outputs:
        raise Refusal(f"stack {stack} has no output {OUTPUT}: deploy the current template.yaml first")
    return outputs[OUTPUT]


def image_exists(ecr, repository_uri: str, tag: str) -> bool:
    repository = repository_uri.split("/", 1)[1]
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return False
    return True


def registry_login(ecr) -> tuple[str, str, str]:
    """(registry host, user name, password) for `docker login`, from ECR's authorization token."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    return data["proxyEndpoint"].removeprefix("https://"), user, password


# --- the docker commands -----------------------------------------------------------------------------------


def login_command(registry: str, user: str) -> list[str]:
    return ["docker", "login", "--username", user, "--password-stdin", registry]


def build_commands(repository_uri: str, tag: str) -> list[list[str]]:
    """Build (from the repository root), tag with the repository's URI, push."""
    local, remote = f"{LOCAL_NAME}:{tag}", f"{repository_uri}:{tag}"
    return [
        ["docker", "build", "--platform", PLATFORM, "--file", DOCKERFILE, "--tag", local, "."],
        ["docker", "tag", local, remote],
        ["docker", "push", remote],
    ]


# --- the command -----------------------------------------------------------------------------------------------


def push(args: argparse.Namespace) -> str:
    """Everything but the printing; returns the tag to deploy with."""
    tag = args.tag or image_tag()
    stack = stack_of(args.env, args.samconfig)
    session = boto3.Session(region_name=args.region or stack.region)
    if session.region_name is None:
        raise Refusal(f"no AWS region: set REGION=<region>, or region in {args.samconfig.name}'s [{args.env}] env")
    problems = [problem for problem in (docker_problem(), credentials_problem(session.client("sts"))) if problem]
    if problems:
        raise Refusal("\n".join(problems))
    uri = repository_uri(session.client("cloudformation"), stack.name)
    ecr = session.client("ecr")
    if image_exists(ecr, uri, tag):
        print(f"{uri}:{tag} is already in the repository (its tags are immutable); nothing to push")
        return tag
    registry, user, password = registry_login(ecr)
    subprocess.run(login_command(registry, user), input=password, text=True, check=True)
    for command in build_commands(uri, tag):
        print("+", " ".join(command), flush=True)
        subprocess.run(command, cwd=REPO_ROOT, check=True)
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="default", help="samconfig.toml's config env naming the stack")
    parser.add_argument("--tag", help="image tag (default: short SHA of the last commit changing the image)")
    parser.add_argument("--region", help="AWS region (default: the config env's, else the AWS SDK's)")
    parser.add_argument("--samconfig", type=Path, default=REPO_ROOT / "samconfig.toml", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        tag = push(args)
    except Refusal as refusal:
        for line in str(refusal).splitlines():
            print(f"make training-image: {line}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as failed:
        print(
            f"make training-image: `{' '.join(failed.cmd)}` failed with exit code {failed.returncode}", file=sys.stderr
        )
        return failed.returncode
    print(f"TrainingImageTag={tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
