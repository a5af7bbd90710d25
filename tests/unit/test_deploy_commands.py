"""samconfig.toml's deploy environments against template.yaml's parameters, and the exact sam commands
`make deploy` runs (scripts/deploy.py; its AWS steps: tests/integration/test_deploy.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from samcli.cli.types import CfnParameterOverridesType
from samcli.lib.config.samconfig import SamConfig

from scripts import deploy, local_stack
from scripts.deploy import SAM, DeployError, environment, sam_commands
from scripts.local_resources import load_template
from tests.helpers.models import REPO_ROOT

PARAMETERS = load_template(REPO_ROOT / "template.yaml")["Parameters"]


def sam_reads(env: str) -> dict:
    """[env.deploy.parameters] as SAM CLI itself reads them, global parameters included."""
    return SamConfig(str(REPO_ROOT)).get_all(["deploy"], "parameters", env=env)


@pytest.mark.parametrize("env", deploy.ENVIRONMENTS)
def test_each_environment_deploys_its_own_stack_with_parameters_the_template_accepts(env):
    configured = environment(env)
    read = sam_reads(env)
    assert (configured.stack_name, configured.region) == (f"med-classifier-{env}", read["region"])
    assert configured.parameter_overrides == CfnParameterOverridesType().convert(
        read["parameter_overrides"], None, None
    )
    assert (
        read["capabilities"] == "CAPABILITY_IAM" and read["resolve_s3"] and read["s3_prefix"] == configured.stack_name
    )
    assert read["tags"] == f"project=med-classifier environment={env}"
    for name, value in configured.parameter_overrides.items():
        assert name in PARAMETERS, f"{env}: {name} is no parameter of template.yaml"
        assert accepts(PARAMETERS[name], value), f"{env}: template.yaml's {name} refuses {value!r}"


def accepts(spec: dict, value: str) -> bool:
    """CloudFormation's checks of a parameter value: AllowedValues, MinValue and MaxValue, AllowedPattern."""
    allowed = spec.get("AllowedValues")
    if spec["Type"] == "Number":
        number = float(value)
        in_range = float(spec.get("MinValue", "-inf")) <= number <= float(spec.get("MaxValue", "inf"))
        return in_range and (allowed is None or number in [float(v) for v in allowed])
    matches = re.fullmatch(spec.get("AllowedPattern", ".*"), value) is not None
    return matches and (allowed is None or value in [str(v) for v in allowed])


@pytest.mark.parametrize(
    "name, value",
    [("LogRetentionDays", "13"), ("UploadCounterMaxConcurrency", "1"), ("EnableWaf", "True"), ("AlarmEmail", "ops")],
)
def test_the_check_refuses_what_cloudformation_would(name, value):
    assert not accepts(PARAMETERS[name], value)


def test_staging_deploys_unattended_prod_asks_and_default_is_as_before():
    assert sam_reads("staging")["confirm_changeset"] is False
    assert sam_reads("prod")["confirm_changeset"] is True
    for env in deploy.ENVIRONMENTS:  # a deploy without changes still publishes models and smoke-tests
        assert sam_reads(env)["fail_on_empty_changeset"] is False
    assert sam_reads("default") == {
        "stack_name": "med-classifier",
        "region": "us-east-1",
        "capabilities": "CAPABILITY_IAM",
        "confirm_changeset": True,
        "resolve_s3": True,
        "s3_prefix": "med-classifier",
    }


def test_staging_reserves_less_and_shifts_at_once_prod_keeps_logs_a_year_behind_a_canary():
    staging, prod = environment("staging").parameter_overrides, environment("prod").parameter_overrides
    reserved = ("PredictReservedConcurrency", "ImagePredictReservedConcurrency", "RetrainingApiReservedConcurrency")
    assert sum(int(staging[name]) for name in reserved) < sum(int(PARAMETERS[name]["Default"]) for name in reserved)
    assert all(int(staging[name]) > 0 for name in reserved)  # reserved, so capped: a flood stays bounded
    assert prod["LogRetentionDays"] == "365"
    assert staging["DeploymentType"] == "AllAtOnce" and "DeploymentType" not in prod  # prod: the canary default
    # Account-wide: left to a deploy that means it (README, "Deploy to AWS").
    assert "ManageApiGatewayAccountLogging" not in staging and "ManageApiGatewayAccountLogging" not in prod


def test_the_commands_build_then_deploy_the_environment_with_the_virtualenvs_sam():
    staging = environment("staging")
    assert Path(SAM).is_file() and Path(SAM).parent == Path(deploy.sys.executable).parent
    assert sam_commands(staging) == [[SAM, "build"], [SAM, "deploy", "--config-env", "staging"]]
    assert sam_commands(staging, skip_build=True) == [[SAM, "deploy", "--config-env", "staging"]]
    assert sam_commands(environment("prod"), template_file=Path("packaged.yaml"), confirm=False) == [
        [SAM, "deploy", "--config-env", "prod", "--template-file", "packaged.yaml", "--no-confirm-changeset"]
    ]


def test_parameters_given_for_one_deploy_are_laid_over_the_environments_as_sam_reads_them():
    staging = environment("staging")
    given = deploy.parameters(
        [
            "ManageApiGatewayAccountLogging=true",
            "LogRetentionDays=30",
            'RetrainThresholdOverrides={"chest-ct": 20}',
            "ReconcileSchedule=rate(5 minutes)",
            "TrainingImageUri=",
        ]
    )
    [command] = sam_commands(staging, skip_build=True, parameter_overrides=given)
    start = command.index("--parameter-overrides") + 1
    assert command[:start] == [SAM, "deploy", "--config-env", "staging", "--parameter-overrides"]
    overrides = command[start:]
    # SAM CLI replaces samconfig's overrides with the command line's, so every one is passed.
    assert CfnParameterOverridesType().convert(tuple(overrides), None, None) == {
        **staging.parameter_overrides,
        **given,
    }
    assert given["LogRetentionDays"] == "30" and given["TrainingImageUri"] == ""


def test_a_parameter_that_is_not_key_value_is_refused():
    with pytest.raises(DeployError) as refused:
        deploy.parameters(["LogRetentionDays"])
    assert str(refused.value) == "--parameter 'LogRetentionDays' is not KEY=VALUE"


def test_an_environment_samconfig_lacks_is_named(tmp_path):
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text('version = 0.1\n[qa.deploy.parameters]\nregion = "eu-west-1"\n')
    with pytest.raises(DeployError) as unknown:
        environment("staging", samconfig)
    assert str(unknown.value) == "samconfig.toml has no [staging.deploy.parameters]"
    with pytest.raises(DeployError) as unnamed:
        environment("qa", samconfig)
    assert str(unnamed.value) == "samconfig.toml: [qa] sets no stack_name"


def test_a_failing_command_stops_the_rest(capsys):
    ran = []

    def run(command, **kwargs):
        ran.append(command)
        return subprocess.CompletedProcess(command, 1 if command[1] == "build" else 0)

    with pytest.raises(DeployError) as failed:
        deploy.run_commands(sam_commands(environment("staging")), run)
    assert str(failed.value) == "sam build exited with 1" and ran == [[SAM, "build"]]
    assert capsys.readouterr().out == f"$ {SAM} build\n"


def test_this_machines_models_are_where_make_run_mirrors_its_bucket():
    args = local_stack.parse_args([])
    bucket = local_stack.load_env_file(args.env_vars)["MODELS_BUCKET"]
    assert deploy.local_models_dir() == args.state_dir / "s3" / bucket


def test_credentials_that_do_not_work_stop_the_deploy_before_anything_runs():
    sts = boto3.client("sts", region_name="us-east-1")
    with Stubber(sts) as stub:
        stub.add_client_error(
            "get_caller_identity", "ExpiredToken", "The security token included in the request is expired"
        )
        with pytest.raises(DeployError) as refused:
            deploy.caller(sts)
    assert str(refused.value) == (
        "no usable AWS credentials (An error occurred (ExpiredToken) when calling the GetCallerIdentity operation: "
        "The security token included in the request is expired): README, Deploy to AWS, step 1"
    )
