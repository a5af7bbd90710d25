"""scripts/deploy.py's AWS steps on moto: a stack whose outputs name a models bucket and a user pool (as
`sam deploy` leaves them), this machine's models in `make run`'s mirror layout, and the smoke-test user.
`sam build` and `sam deploy` cannot run here (no AWS account): a fake runner records their argv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from argparse import Namespace

import boto3
import pytest
from moto import mock_aws

from med_classifier.adapters.model_store import ModelStore
from scripts import deploy
from scripts.deploy import SMOKE_USERNAME
from scripts.local_cognito import PoolUser, id_token, provision_cognito
from scripts.local_stack import MODELS_TO_SEED, BucketMirror
from scripts.smoke_test import SignIn
from scripts.training_image import Refusal
from tests.helpers.image_models import colour_candidate
from tests.helpers.models import REPO_ROOT, publish

REGION = "us-east-1"
STACK = "med-classifier-staging"  # samconfig.toml's [staging]
API_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/v1"


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def create_stack(cloudformation, name: str, outputs: dict) -> dict[str, str]:
    """A stack with a bucket (moto names it) and these outputs besides ModelsBucketName, as `sam deploy` leaves them."""
    template = {
        "Resources": {"ModelsBucket": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {
            "ModelsBucketName": {"Value": {"Ref": "ModelsBucket"}},
            **{key: {"Value": value} for key, value in outputs.items()},
        },
    }
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
    [described] = cloudformation.describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}


@pytest.fixture
def stack(aws):
    """The stack's user pool, groups and app client as template.yaml defines them, and its outputs."""
    cognito = aws.client("cognito-idp")
    pool = provision_cognito(cognito, REPO_ROOT / "template.yaml", endpoint_url="")
    outputs = {"ApiUrl": API_URL, "UserPoolId": pool.pool_id, "UserPoolClientId": pool.client_id}
    outputs = create_stack(aws.client("cloudformation"), STACK, outputs)
    return {"outputs": outputs, "store": ModelStore(outputs["ModelsBucketName"], aws.client("s3")), "cognito": cognito}


@pytest.fixture
def local_models(aws, tmp_path):
    """This machine's published models as `make run` keeps them: its bucket mirrored to a folder."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="local-models")
    store = ModelStore("local-models", s3)
    versions = {model: publish(store, colour_candidate(model)).version for model in MODELS_TO_SEED}
    BucketMirror(s3, "local-models", tmp_path / "mirror").sync()
    return tmp_path / "mirror", versions


def onnx_of(store: ModelStore, model: str) -> bytes:
    return store.read_version(model, store.read_pointer(model).version).onnx


class Runner:
    """Records each command; a training command publishes as `python -m training` would."""

    def __init__(self, store: ModelStore | None = None, exit_code: int = 0):
        self.store, self.exit_code, self.calls = store, exit_code, []

    def __call__(self, command, **kwargs):
        self.calls.append((command, kwargs))
        if command[1:3] == ["-m", "training"] and self.exit_code == 0:
            publish(self.store, colour_candidate(command[3]))
        return subprocess.CompletedProcess(command, self.exit_code)


def test_stack_outputs_are_read_and_a_missing_one_is_named(aws, stack):
    cloudformation = aws.client("cloudformation")
    assert deploy.stack_outputs(cloudformation, STACK) == stack["outputs"]
    create_stack(cloudformation, "half", {"ApiUrl": API_URL})
    with pytest.raises(Refusal) as missing:
        deploy.stack_outputs(cloudformation, "half")
    assert str(missing.value) == "stack half (CREATE_COMPLETE) has no output UserPoolId, UserPoolClientId"
    with pytest.raises(Refusal) as absent:
        deploy.stack_outputs(cloudformation, "no-such-stack")
    assert str(absent.value) == "stack no-such-stack: Stack with id no-such-stack does not exist"


def test_only_missing_models_are_published_from_this_machine_or_trained(stack, local_models, monkeypatch):
    mirror, local_versions = local_models
    store = stack["store"]
    already = publish(store, colour_candidate("breast-cancer")).version
    shutil.rmtree(mirror / "models" / "skin-lesion")  # this machine never trained skin-lesion
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5005")  # make run's moto: training must not go there
    runner = Runner(store)

    done = deploy.publish_missing_models(store, MODELS_TO_SEED, mirror, REGION, runner)

    trained = store.read_pointer("skin-lesion").version
    assert done == {
        "breast-cancer": "already published",
        "breast-cancer-lite": f"copied {local_versions['breast-cancer-lite']} from {mirror}",
        "chest-ct": f"copied {local_versions['chest-ct']} from {mirror}",
        "skin-lesion": f"trained {trained}",
    }
    assert store.read_pointer("breast-cancer").version == already and store.list_versions("breast-cancer") == [already]
    for model in ("breast-cancer-lite", "chest-ct"):
        assert store.read_pointer(model).version == local_versions[model]
        assert onnx_of(store, model) == (mirror / "models" / model / local_versions[model] / "model.onnx").read_bytes()
    [(command, kwargs)] = runner.calls
    assert command == [sys.executable, "-m", "training", "skin-lesion", "--bucket", store.bucket]
    assert kwargs["env"]["AWS_REGION"] == REGION and "AWS_ENDPOINT_URL" not in kwargs["env"]

    again = deploy.publish_missing_models(store, MODELS_TO_SEED, mirror, REGION, runner)
    assert set(again.values()) == {"already published"} and len(runner.calls) == 1


def test_a_model_training_does_not_publish_stops_the_deploy(stack, tmp_path):
    with pytest.raises(Refusal) as failed:
        deploy.publish_missing_models(stack["store"], ["chest-ct"], tmp_path / "none", REGION, Runner(exit_code=2))
    assert str(failed.value) == "python -m training chest-ct exited with 2 (2: its gate rejected it): nothing published"
    assert stack["store"].read_pointer("chest-ct") is None


def signs_in(stack, user: PoolUser) -> bool:
    cognito = stack["cognito"]
    try:
        return bool(id_token(cognito, stack["outputs"]["UserPoolClientId"], user))
    except cognito.exceptions.NotAuthorizedException:
        return False


def test_the_smoke_user_gets_a_new_password_each_run_and_is_disabled_after_the_test(stack):
    cognito, pool = stack["cognito"], stack["outputs"]["UserPoolId"]
    seen = []

    def smoke(url, auth, expect_models):
        seen.append((url, auth, tuple(expect_models)))
        return signs_in(stack, PoolUser(auth.username, auth.password, ()))

    assert deploy.smoke_test_stack(cognito, stack["outputs"], REGION, smoke)
    assert deploy.smoke_test_stack(cognito, stack["outputs"], REGION, smoke)  # re-enabled, re-passworded
    (url, first, models), (_, second, _) = seen
    assert (url, models) == (API_URL, tuple(MODELS_TO_SEED))
    assert first == SignIn(SMOKE_USERNAME, first.password, stack["outputs"]["UserPoolClientId"], REGION)
    assert first.password != second.password and len(second.password) >= 12
    user = cognito.admin_get_user(UserPoolId=pool, Username=SMOKE_USERNAME)
    assert user["Enabled"] is False
    groups = cognito.admin_list_groups_for_user(UserPoolId=pool, Username=SMOKE_USERNAME)["Groups"]
    assert [g["GroupName"] for g in groups] == ["clinicians"]
    cognito.admin_enable_user(UserPoolId=pool, Username=SMOKE_USERNAME)
    assert not signs_in(stack, PoolUser(SMOKE_USERNAME, first.password, ()))  # the old password is gone
    assert signs_in(stack, PoolUser(SMOKE_USERNAME, second.password, ()))


def test_the_smoke_user_is_disabled_when_the_smoke_test_fails_or_raises(stack):
    cognito, pool = stack["cognito"], stack["outputs"]["UserPoolId"]
    assert not deploy.smoke_test_stack(cognito, stack["outputs"], REGION, lambda *args, **kwargs: False)
    assert cognito.admin_get_user(UserPoolId=pool, Username=SMOKE_USERNAME)["Enabled"] is False

    def broken(*args, **kwargs):
        raise ConnectionError("network down")

    with pytest.raises(ConnectionError):
        deploy.smoke_test_stack(cognito, stack["outputs"], REGION, broken)
    assert cognito.admin_get_user(UserPoolId=pool, Username=SMOKE_USERNAME)["Enabled"] is False


def arguments(*argv: str, local_models) -> Namespace:
    return deploy.parse_args(["--env", "staging", "--local-models", str(local_models), *argv])


def test_deploy_builds_deploys_publishes_and_smoke_tests_in_that_order(stack, local_models, monkeypatch, capsys):
    mirror, local_versions = local_models
    monkeypatch.delenv("CI", raising=False)
    runner, smoked = Runner(stack["store"]), []

    def smoke(url, auth, expect_models):
        smoked.append(url)
        assert {m: stack["store"].read_pointer(m).version for m in MODELS_TO_SEED} == local_versions
        return True

    url = deploy.deploy(arguments(local_models=mirror), runner, smoke)

    assert url == API_URL and smoked == [API_URL]
    assert [command for command, _ in runner.calls] == [
        [deploy.SAM, "build"],
        [deploy.SAM, "deploy", "--config-env", "staging", "--region", REGION],
    ]
    out = capsys.readouterr().out
    assert f"[deploy] {STACK} in {REGION}, account 123456789012\n" in out
    assert f"$ {deploy.SAM} deploy --config-env staging --region {REGION}\n" in out


def test_deploy_in_ci_does_not_ask_and_a_failed_smoke_test_fails_it(stack, local_models, monkeypatch):
    monkeypatch.setenv("CI", "true")
    runner = Runner(stack["store"])
    with pytest.raises(Refusal) as failed:
        deploy.deploy(arguments("--skip-build", local_models=local_models[0]), runner, lambda *a, **k: False)
    assert str(failed.value) == f"the smoke test failed against {API_URL} (the stack stays deployed)"
    assert [command for command, _ in runner.calls] == [
        [deploy.SAM, "deploy", "--config-env", "staging", "--region", REGION, "--no-confirm-changeset"]
    ]


def test_a_failed_sam_command_stops_the_deploy_before_anything_is_published(stack, local_models):
    with pytest.raises(Refusal) as failed:
        deploy.deploy(arguments(local_models=local_models[0]), Runner(exit_code=1), lambda *a, **k: True)
    assert str(failed.value) == "sam build exited with 1"
    assert stack["store"].list_model_ids() == []
