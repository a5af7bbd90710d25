"""`make training-image`'s calls to AWS, on moto: the stack's TrainingImageRepositoryUri output (a CloudFormation
stack with the template's repository and output), whether the tag is already pushed, ECR's docker login."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from scripts.training_image import OUTPUT, Refusal, image_exists, registry_login, repository_uri

STACK = "med-classifier-staging"
# CloudFormation names the repository <stack>-<logical id>-<suffix>, in lower case (moto needs it given).
REPOSITORY = "med-classifier-staging-trainingimagerepository-1a2b3c"
URI = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{REPOSITORY}"
TEMPLATE = {
    "Resources": {
        "TrainingImageRepository": {
            "Type": "AWS::ECR::Repository",
            "Properties": {"RepositoryName": REPOSITORY, "ImageTagMutability": "IMMUTABLE"},
        }
    },
    "Outputs": {OUTPUT: {"Value": {"Fn::GetAtt": ["TrainingImageRepository", "RepositoryUri"]}}},
}


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")


def test_the_repository_is_the_stacks_output(aws):
    cloudformation = aws.client("cloudformation")
    cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE))
    assert repository_uri(cloudformation, STACK) == URI


def test_a_stack_not_deployed_yet_is_refused(aws):
    with pytest.raises(Refusal) as refused:
        repository_uri(aws.client("cloudformation"), STACK)
    assert str(refused.value) == (
        "stack med-classifier-staging does not exist in us-east-1: deploy it once first (make deploy), "
        "which creates its TrainingImageRepository"
    )


def test_a_stack_of_an_older_template_without_the_output_is_refused(aws):
    cloudformation = aws.client("cloudformation")
    cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps({"Resources": TEMPLATE["Resources"]}))
    with pytest.raises(Refusal) as refused:
        repository_uri(cloudformation, STACK)
    assert str(refused.value) == (
        "stack med-classifier-staging has no output TrainingImageRepositoryUri: deploy the current template.yaml first"
    )


def test_a_tag_already_pushed_is_found(aws):
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName=REPOSITORY)
    assert image_exists(ecr, URI, "c88f2f244c83") is False
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:" + "a" * 64,
        },
        "layers": [],
    }
    ecr.put_image(repositoryName=REPOSITORY, imageManifest=json.dumps(manifest), imageTag="c88f2f244c83")
    assert image_exists(ecr, URI, "c88f2f244c83") is True
    assert image_exists(ecr, URI, "another") is False


def test_docker_logs_in_to_the_registry_with_ecrs_token(aws):
    # moto's token is base64("AWS:123456789012-auth-token"), as ECR's is base64("AWS:<password>").
    assert registry_login(aws.client("ecr")) == (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "AWS",
        "123456789012-auth-token",
    )
