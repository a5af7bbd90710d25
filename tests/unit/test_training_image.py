"""`make training-image` (scripts/training_image.py): the image's tag, the stack it goes to, the docker commands,
and what it says when Docker or AWS credentials are missing (for real: Docker's daemon at an address where
none listens, an environment without credentials). Its calls to AWS are tested on moto in
tests/integration/test_training_image_on_moto.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from scripts import training_image
from scripts.training_image import (
    IMAGE_INPUTS,
    Refusal,
    Stack,
    build_commands,
    credentials_problem,
    docker_problem,
    image_tag,
    login_command,
    stack_of,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/med-classifier-staging-trainingimagerepository-1a2b3c"
NO_DAEMON = "unix:///nonexistent/docker.sock"
DOCKER_MISSING = (
    "Docker's daemon is not reachable (`docker info` failed): start it (`sudo systemctl start docker`, "
    "or Docker Desktop) and check that you may use it, or run this where Docker runs "
    "(the pipeline's training-image job)."
)
CREDENTIALS_MISSING = (
    "No AWS credentials: configure them (`aws configure`, `aws sso login`, AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); in the pipeline, "
    "aws-actions/configure-aws-credentials assumes the stage's role."
)


def no_credentials_env() -> dict[str, str]:
    """This environment without any AWS credentials, and boto3 asking no instance metadata service (no hang)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    return env | {
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": "us-east-1",
    }


# --- the docker commands ------------------------------------------------------------------------------------------


def test_the_image_is_built_for_x86_from_the_repository_root_tagged_and_pushed():
    assert build_commands(URI, "c88f2f244c83") == [
        [
            "docker",
            "build",
            "--platform",
            "linux/amd64",
            "--file",
            "training/Dockerfile",
            "--tag",
            "med-classifier-training:c88f2f244c83",
            ".",
        ],
        ["docker", "tag", "med-classifier-training:c88f2f244c83", f"{URI}:c88f2f244c83"],
        ["docker", "push", f"{URI}:c88f2f244c83"],
    ]


def test_docker_logs_in_with_the_password_on_stdin():
    registry = URI.split("/")[0]
    assert login_command(registry, "AWS") == ["docker", "login", "--username", "AWS", "--password-stdin", registry]


def test_the_image_inputs_are_exactly_what_the_dockerfile_copies():
    copies = re.findall(r"^COPY (.+) \S+$", (REPO_ROOT / "training" / "Dockerfile").read_text(), re.MULTILINE)
    sources = [source for line in copies for source in line.split()]
    assert all(any(source == i or source.startswith(i + "/") for i in IMAGE_INPUTS) for source in sources), sources
    assert set(IMAGE_INPUTS) <= set(sources)


# --- the tag -------------------------------------------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t"}
    env = os.environ | identity | {"GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit(root: Path, path: str, text: str) -> str:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)
    git(root, "add", path)
    git(root, "commit", "-q", "-m", f"change {path}")
    return git(root, "rev-parse", "--short=12", "HEAD")


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    return tmp_path


def test_the_tag_is_the_last_commit_that_changed_the_images_inputs(repo):
    commit(repo, "training/Dockerfile", "FROM python:3.11-slim\n")
    changed = commit(repo, "layers/shared/python/med_classifier/x.py", "x = 1\n")
    commit(repo, "README.md", "docs only\n")
    commit(repo, "template.yaml", "not copied into the image\n")
    assert image_tag(repo) == changed
    assert len(changed) == 12


def test_uncommitted_changes_to_the_inputs_are_refused(repo):
    commit(repo, "training/Dockerfile", "FROM python:3.11-slim\n")
    (repo / "training" / "Dockerfile").write_text("FROM python:3.12-slim\n")
    with pytest.raises(Refusal) as refused:
        image_tag(repo)
    assert str(refused.value) == (
        "uncommitted changes to the training image's inputs (training, layers/shared/python, requirements.lock, "
        "pyproject.toml): commit them, or name the image yourself with TAG=<tag>"
    )


# --- the stack -------------------------------------------------------------------------------------------------------


def test_the_default_config_env_is_the_med_classifier_stack():
    assert stack_of("default", REPO_ROOT / "samconfig.toml") == Stack("med-classifier", "us-east-1")


def test_a_config_env_names_its_stack_deploy_parameters_before_global_ones(tmp_path):
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text(
        'version = 0.1\n[staging.global.parameters]\nstack_name = "global-name"\nregion = "eu-west-1"\n'
        '[staging.deploy.parameters]\nstack_name = "med-classifier-staging"\n'
    )
    assert stack_of("staging", samconfig) == Stack("med-classifier-staging", "eu-west-1")


def test_a_config_env_without_a_stack_is_refused(tmp_path):
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text('version = 0.1\n[default.global.parameters]\nstack_name = "med-classifier"\n')
    with pytest.raises(Refusal) as refused:
        stack_of("prod", samconfig)
    assert str(refused.value) == (
        "samconfig.toml has no stack_name for the config env 'prod' "
        "([prod.deploy.parameters] or [prod.global.parameters])"
    )


# --- what is missing -------------------------------------------------------------------------------------------------


def test_docker_without_a_daemon_is_reported(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    assert docker_problem() == DOCKER_MISSING


def test_docker_not_installed_is_reported():
    assert docker_problem("/nonexistent/docker") == (
        "Docker is not installed (no `/nonexistent/docker` command): install Docker Engine or Docker Desktop, "
        "or run this where Docker is (the pipeline's training-image job)."
    )


def test_refused_credentials_are_reported():
    sts = boto3.client("sts", region_name="us-east-1")
    with Stubber(sts) as stubbed:
        stubbed.add_client_error("get_caller_identity", service_error_code="ExpiredToken")
        assert credentials_problem(sts) == (
            "AWS refused the credentials (ExpiredToken): renew them (`aws sso login`, or new keys) and try again."
        )


def test_accepted_credentials_are_no_problem():
    sts = boto3.client("sts", region_name="us-east-1")
    with Stubber(sts) as stubbed:
        stubbed.add_response("get_caller_identity", {"Account": "123456789012", "Arn": "arn:aws:iam::1:user/x"})
        assert credentials_problem(sts) is None


def test_without_docker_or_credentials_it_says_both_and_exits_2_without_a_traceback():
    python_path = os.pathsep.join([str(REPO_ROOT / "layers" / "shared" / "python"), str(REPO_ROOT)])
    env = no_credentials_env() | {"DOCKER_HOST": NO_DAEMON, "PYTHONPATH": python_path}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.training_image", "--tag", "t1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"make training-image: {DOCKER_MISSING}\nmake training-image: {CREDENTIALS_MISSING}\n"


def test_no_region_anywhere_is_refused(tmp_path, monkeypatch, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text('version = 0.1\n[staging.deploy.parameters]\nstack_name = "med-classifier-staging"\n')
    assert training_image.main(["--env", "staging", "--tag", "t1", "--samconfig", str(samconfig)]) == 2
    assert capsys.readouterr().err == (
        "make training-image: no AWS region: set REGION=<region>, or region in samconfig.toml's [staging] env\n"
    )
