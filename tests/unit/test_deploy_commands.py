"""samconfig.toml's deploy environments against template.yaml's parameters, and the exact sam commands
`make deploy` runs (scripts/deploy.py; its AWS steps: tests/integration/test_deploy.py)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from samcli.cli.types import CfnParameterOverridesType
from samcli.lib.config.samconfig import SamConfig

from scripts import deploy, local_stack
from scripts.deploy import SAM, environment, sam_commands
from scripts.local_resources import load_template
from scripts.local_runner.api import yaml_safe_loader_preserved
from scripts.training_image import Refusal
from tests.helpers.models import REPO_ROOT
from tests.unit.test_workflows import PIPELINE, load, steps

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
    deploy_staging = [SAM, "deploy", "--config-env", "staging", "--region", "us-east-1"]
    assert Path(SAM).is_file() and Path(SAM).parent == Path(deploy.sys.executable).parent
    assert sam_commands(staging) == [[SAM, "build"], deploy_staging]
    assert sam_commands(staging, skip_build=True) == [deploy_staging]
    assert sam_commands(
        environment("prod", region="eu-west-1"), template_file=Path("packaged.yaml"), confirm=False
    ) == [
        [SAM, "deploy", "--config-env", "prod", "--region", "eu-west-1", "--template-file", "packaged.yaml"]
        + ["--no-confirm-changeset"]
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
    assert command[:start] == [
        SAM,
        "deploy",
        "--config-env",
        "staging",
        "--region",
        "us-east-1",
        "--parameter-overrides",
    ]
    overrides = command[start:]
    # SAM CLI replaces samconfig's overrides with the command line's, so every one is passed.
    assert CfnParameterOverridesType().convert(tuple(overrides), None, None) == {
        **staging.parameter_overrides,
        **given,
    }
    assert given["LogRetentionDays"] == "30" and given["TrainingImageUri"] == ""


def test_a_parameter_that_is_not_key_value_is_refused():
    with pytest.raises(Refusal) as refused:
        deploy.parameters(["LogRetentionDays"])
    assert str(refused.value) == "--parameter 'LogRetentionDays' is not KEY=VALUE"


def test_an_environment_without_a_region_needs_one_given(tmp_path):
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text('version = 0.1\n[qa.deploy.parameters]\nstack_name = "med-classifier-qa"\n')
    with pytest.raises(Refusal) as unknown:
        environment("qa", samconfig)
    assert str(unknown.value) == "no AWS region: pass --region, or set region in samconfig.toml's [qa] env"
    assert environment("qa", samconfig, region="eu-west-1") == deploy.Environment(
        "qa", "med-classifier-qa", "eu-west-1", {}
    )


def test_a_failing_command_stops_the_rest(capsys):
    ran = []

    def run(command, **kwargs):
        ran.append(command)
        return subprocess.CompletedProcess(command, 1 if command[1] == "build" else 0)

    with pytest.raises(Refusal) as failed:
        deploy.run_commands(sam_commands(environment("staging")), run)
    assert str(failed.value) == "sam build exited with 1" and ran == [[SAM, "build"]]
    assert capsys.readouterr().out == f"$ {SAM} build\n"


def test_this_machines_models_are_where_make_run_mirrors_its_bucket():
    args = local_stack.parse_args([])
    bucket = local_stack.load_env_file(args.env_vars)["MODELS_BUCKET"]
    assert deploy.local_models_dir() == args.state_dir / "s3" / bucket


def pipeline_deploy_arguments(job_id: str) -> list[str]:
    """The arguments the pipeline's deploy job gives `python -m scripts.deploy` (`make deploy ENV=...
    DEPLOY_ARGS="..."`), its variables given example values."""
    [run] = [
        step["run"]
        for _, _, step in steps({"jobs": {job_id: load(PIPELINE)["jobs"][job_id]}})
        if "make deploy" in step.get("run", "")
    ]
    for name, value in PIPELINE_VALUES.items():
        run = run.replace(f"${name}", value)
    [make, target, env, deploy_args] = shlex.split(run)
    assert (make, target, deploy_args[:12]) == ("make", "deploy", "DEPLOY_ARGS=")
    return ["--env", env.removeprefix("ENV="), *shlex.split(deploy_args.removeprefix("DEPLOY_ARGS="))]


PIPELINE_VALUES = {
    "STAGING_REGION": "eu-west-1",
    "PROD_REGION": "eu-central-1",
    "STAGING_ARTIFACTS_BUCKET": "staging-artifacts",
    "PROD_ARTIFACTS_BUCKET": "prod-artifacts",
    "STAGING_CLOUDFORMATION_EXECUTION_ROLE": "arn:aws:iam::111111111111:role/staging-cfn",
    "PROD_CLOUDFORMATION_EXECUTION_ROLE": "arn:aws:iam::222222222222:role/prod-cfn",
    "TRAINING_IMAGE_TAG": "c88f2f244c83",
}


@pytest.mark.parametrize("job_id, env", [("deploy-staging", "staging"), ("deploy-prod", "prod")])
def test_the_pipelines_deploy_reaches_sam_as_sam_cli_reads_it(job_id, env, monkeypatch):
    """CI/CD's deploy jobs pass sam deploy's own options through `make deploy` (README, CI/CD): SAM CLI
    must read them, with the environment's samconfig.toml, as one consistent deploy."""
    from samcli.commands.deploy.command import cli

    args = deploy.parse_args(pipeline_deploy_arguments(job_id))
    region = PIPELINE_VALUES[f"{env.upper()}_REGION"]
    assert (args.skip_build, args.yes, args.region) == (True, True, region)
    configured = environment(env, region=args.region)
    [command] = sam_commands(
        configured,
        template_file=args.template_file,
        skip_build=args.skip_build,
        confirm=not args.yes,
        parameter_overrides=deploy.parameters(args.parameters),
        sam_args=args.sam_args,
    )
    assert command[:6] == [SAM, "deploy", "--config-env", env, "--region", region]
    assert command[6:8] == ["--template-file", f"packaged-{env}.yaml"]
    monkeypatch.chdir(REPO_ROOT)  # where SAM CLI finds samconfig.toml; the template stands in for the packaged one
    # Reading the options parses the template with SAM CLI's YAML loader, which would stay registered on
    # yaml.SafeLoader for every later test in this process (MLflow's YAML then breaks).
    with yaml_safe_loader_preserved():
        read = cli.make_context("deploy", [*command[2:6], "--template-file", "template.yaml", *command[8:]]).params
    assert read["parameter_overrides"] == {
        **configured.parameter_overrides,
        "TrainingImageTag": PIPELINE_VALUES["TRAINING_IMAGE_TAG"],
    }
    assert read["stack_name"] == f"med-classifier-{env}" and read["confirm_changeset"] is False
    assert read["role_arn"] == PIPELINE_VALUES[f"{env.upper()}_CLOUDFORMATION_EXECUTION_ROLE"]
    # The pipeline's artifacts bucket, not one SAM CLI would resolve: it refuses both at once.
    assert (read["s3_bucket"], read["resolve_s3"]) == (PIPELINE_VALUES[f"{env.upper()}_ARTIFACTS_BUCKET"], False)


def test_parameters_come_by_either_name_and_unknown_options_go_to_sam_deploy():
    args = deploy.parse_args(
        ["--env", "prod", "--parameter", "A=1", "--role-arn", "arn:r", "--parameter-overrides", "B=2", "C=3", "--yes"]
    )
    assert (args.parameters, args.sam_args, args.yes) == (["A=1", "B=2", "C=3"], ["--role-arn", "arn:r"], True)
