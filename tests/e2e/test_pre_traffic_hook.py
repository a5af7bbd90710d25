"""The canary deployment's PreTraffic hook against the local stack: CodeDeploy (moto, with the lifecycle-hook
status that scripts/local_runner/moto_service.py adds) starts a deployment, the hook function runs in the
runner and calls the predict functions through the runner's Lambda Invoke API (as it calls the new versions
on AWS), and the deployment ends Succeeded, or Failed when a model answers otherwise than its golden
examples say."""

from __future__ import annotations

import json

import boto3
import pytest

from scripts.local_stack import aws_client
from tests.helpers.keras_models import breast_cancer_lite_candidate
from tests.helpers.models import manifest_for

ALL_MODELS = ["breast-cancer", "breast-cancer-lite", "chest-ct", "skin-lesion"]
TARGETS = {"breast-cancer": "PredictFunction", "breast-cancer-lite": "PredictFunction"}


@pytest.fixture(scope="module")
def codedeploy(stack):
    client = aws_client("codedeploy", stack["moto_url"])
    client.create_application(applicationName="med-classifier-local", computePlatform="Lambda")
    client.create_deployment_group(
        applicationName="med-classifier-local",
        deploymentGroupName="PredictFunction",
        serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
    )
    return client


def deployment(codedeploy) -> str:
    return codedeploy.create_deployment(
        applicationName="med-classifier-local",
        deploymentGroupName="PredictFunction",
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": "{}"}},
    )["deploymentId"]


def run_hook(stack, deployment_id: str) -> dict:
    """Invokes the hook through the runner's Lambda API, as CodeDeploy invokes it."""
    client = boto3.client(
        "lambda",
        endpoint_url=stack["lambda_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    response = client.invoke(
        FunctionName="PreTrafficHookFunction",
        Payload=json.dumps({"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": "hook-1"}).encode(),
    )
    payload = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, payload
    return payload


def test_every_models_golden_examples_pass_through_the_functions_and_the_deployment_succeeds(stack, codedeploy):
    deployment_id = deployment(codedeploy)
    report = run_hook(stack, deployment_id)
    assert report["status"] == "Succeeded", report
    checked = {line.split(" ")[0]: line for line in report["checked"]}
    assert sorted(checked) == ALL_MODELS
    for model, line in checked.items():
        target = TARGETS.get(model, "ImagePredictFunction")
        assert f" on {target}: " in line and line.endswith("golden examples answered the same"), line
    assert report["failures"] == [] and report["unchecked"] == []
    assert codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]["status"] == "Succeeded"


def test_a_model_answering_otherwise_than_its_golden_examples_fails_the_deployment(stack, codedeploy):
    store = stack["store"]
    serving = store.read_pointer("breast-cancer-lite").version
    candidate = breast_cancer_lite_candidate()
    manifest = manifest_for(candidate)
    # The same ONNX file, but its first golden example recorded as the other class: what a changed
    # preprocessing or runtime would answer.
    golden = manifest.golden_examples[0]
    other = next(label for label in manifest.classes if label != golden.label)
    swapped = golden.model_copy(
        update={"label": other, "probabilities": {other: golden.probabilities[golden.label], golden.label: 0.0}}
    )
    tampered = manifest.model_copy(update={"golden_examples": [swapped, *manifest.golden_examples[1:]]})
    store.publish(tampered, candidate.onnx, promote=True)
    try:
        deployment_id = deployment(codedeploy)
        report = run_hook(stack, deployment_id)
        assert report["status"] == "Failed"
        prefix = f"breast-cancer-lite {tampered.version} on PredictFunction: golden example 0: "
        assert report["failures"][0] == f"{prefix}label {golden.label!r} instead of {other!r}"
        assert all(line.startswith(prefix) for line in report["failures"])
        assert codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]["status"] == "Failed"
    finally:
        store.promote("breast-cancer-lite", serving)
