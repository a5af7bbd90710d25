"""`make deploy ENV=staging|prod`: deploy the stack to AWS and smoke-test it. NOT FOR CLINICAL USE.

1. `sam build` (not with --skip-build, nor with --template-file: a template `sam package` already built);
2. `sam deploy --config-env ENV`: stack name, region, parameters and tags from samconfig.toml; with
   --no-confirm-changeset when nobody is there to confirm (CI set, or --yes); any option this script does
   not know goes to `sam deploy` as it is (the pipeline's --role-arn, --s3-bucket: README, CI/CD);
3. the stack's outputs (CloudFormation DescribeStacks);
4. each model without models/<model>/production.json in the stack's models bucket is published: this
   machine's version from `make run`'s mirror of its bucket when there is one, else trained here
   (`python -m training <model> --bucket <bucket>`); models already there are left alone;
5. the smoke test (scripts/smoke_test.py) as a smoke-test user in clinicians, given a new random password
   each run and disabled again afterwards, so it is never a standing credential;
6. the API's URL.

The AWS steps are functions tested on moto (tests/integration/test_deploy.py); the sam commands are
tested as the argv they run (tests/unit/test_deploy_commands.py).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts import smoke_test
from scripts.local_cognito import PoolUser, create_user
from scripts.local_stack import DEFAULT_ENV_FILE, MODELS_TO_SEED, REPO_ROOT, load_env_file
from scripts.training_image import Refusal, credentials_problem, stack_of

ENVIRONMENTS = ("staging", "prod")
SAMCONFIG = REPO_ROOT / "samconfig.toml"
SAM = str(Path(sys.executable).with_name("sam"))  # the virtualenv's, pinned in requirements.lock
OUTPUTS = ("ApiUrl", "ModelsBucketName", "UserPoolId", "UserPoolClientId")
SMOKE_USERNAME = "smoke-test@example.org"
SMOKE_GROUP = "clinicians"  # may predict and ask for upload tickets, may not start a (paid) retraining job


@dataclass(frozen=True)
class Environment:
    name: str
    stack_name: str
    region: str
    parameter_overrides: dict[str, str]


def environment(name: str, samconfig: Path = SAMCONFIG, region: str | None = None) -> Environment:
    """A samconfig.toml environment's stack, region (unless `region` is given) and parameter_overrides."""
    stack = stack_of(name, samconfig)
    region = region or stack.region
    if region is None:
        raise Refusal(f"no AWS region: pass --region, or set region in {samconfig.name}'s [{name}] env")
    deploy = tomllib.loads(samconfig.read_text())[name].get("deploy", {}).get("parameters", {})
    return Environment(name, stack.name, region, parameters(deploy.get("parameter_overrides", {})))


def parameters(overrides: dict | Iterable[str]) -> dict[str, str]:
    """Template parameters: samconfig.toml's parameter_overrides table, or `Key=Value` strings (--parameter)."""
    if isinstance(overrides, dict):
        return {str(key): str(value) for key, value in overrides.items()}
    parsed = {}
    for pair in overrides:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Refusal(f"--parameter {pair!r} is not KEY=VALUE")
        parsed[key] = value
    return parsed


def override_argument(key: str, value: str) -> str:
    """`Key=Value` for `sam deploy --parameter-overrides`, the value quoted as SAM CLI reads it when it
    holds spaces or quotes (a JSON parameter, a schedule expression)."""
    if value and not any(c.isspace() or c in "\"'" for c in value):
        return f"{key}={value}"
    escaped = value.replace('"', '\\"')
    return f'{key}="{escaped}"'


def sam_commands(
    env: Environment,
    *,
    template_file: Path | None = None,
    skip_build: bool = False,
    confirm: bool = True,
    parameter_overrides: dict[str, str] | None = None,
    sam_args: Sequence[str] = (),
) -> list[list[str]]:
    """What `make deploy` runs, in order. `parameter_overrides` are laid over the environment's: SAM CLI
    replaces the configured ones with any given on the command line, never merges them. `sam_args` go
    to `sam deploy` as they are."""
    commands = [] if template_file or skip_build else [[SAM, "build"]]
    deploy = [SAM, "deploy", "--config-env", env.name, "--region", env.region]
    if template_file:
        deploy += ["--template-file", str(template_file)]
    if not confirm:
        deploy.append("--no-confirm-changeset")
    if parameter_overrides:
        merged = {**env.parameter_overrides, **parameter_overrides}
        deploy += ["--parameter-overrides", *(override_argument(key, value) for key, value in merged.items())]
    deploy += list(sam_args)
    if "--s3-bucket" in sam_args:  # samconfig.toml's resolve_s3 would name another, and SAM CLI refuses both
        deploy.append("--no-resolve-s3")
    return [*commands, deploy]


def run_commands(commands: list[list[str]], run: Callable = subprocess.run) -> None:
    for command in commands:
        print(f"$ {shlex.join(command)}", flush=True)
        done = run(command, cwd=REPO_ROOT)
        if done.returncode != 0:
            raise Refusal(f"{Path(command[0]).name} {command[1]} exited with {done.returncode}")


def stack_outputs(cloudformation, stack_name: str) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        raise Refusal(f"stack {stack_name}: {exc.response['Error']['Message']}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = [key for key in OUTPUTS if key not in outputs]
    if missing:
        raise Refusal(f"stack {stack_name} ({stack['StackStatus']}) has no output {', '.join(missing)}")
    return outputs


def local_models_dir() -> Path:
    """Where `make run` mirrors its models bucket (scripts/local_stack.py's BucketMirror)."""
    from training.settings import training_settings

    return training_settings().local_state_dir / "s3" / load_env_file(DEFAULT_ENV_FILE)["MODELS_BUCKET"]


def publish_missing_models(
    store, models: Iterable[str], local_dir: Path, region: str, run: Callable = subprocess.run
) -> dict[str, str]:
    """Publish each of `models` that has no production pointer in `store` (a ModelStore): a copy of the
    version `local_dir`'s pointer names, else trained here. Returns model -> what was done."""
    done = {}
    for model in models:
        if store.read_pointer(model) is not None:
            done[model] = "already published"
        elif (local_dir / "models" / model / "production.json").is_file():
            done[model] = f"copied {copy_local_version(store, local_dir, model)} from {local_dir}"
        else:
            command = [sys.executable, "-m", "training", model, "--bucket", store.bucket]
            print(f"[deploy] {model}: no version here or in {local_dir}; training it: {shlex.join(command)}")
            environ = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
            exit_code = run(command, cwd=REPO_ROOT, env={**environ, "AWS_REGION": region}).returncode
            if exit_code != 0:
                raise Refusal(
                    f"python -m training {model} exited with {exit_code} (2: its gate rejected it): nothing published"
                )
            done[model] = f"trained {store.read_pointer(model).version}"
        print(f"[deploy] {model}: {done[model]}", flush=True)
    return done


def copy_local_version(store, local_dir: Path, model: str) -> str:
    """Publish the version `local_dir` serves as `model`'s production; ModelStore checks it as any publish."""
    from med_classifier.domain.manifest import Manifest, ProductionPointer

    folder = local_dir / "models" / model
    version = ProductionPointer.model_validate_json((folder / "production.json").read_bytes()).version
    manifest = Manifest.model_validate_json((folder / version / "manifest.json").read_bytes())
    weights = manifest.native_weights  # image models' (for fine-tuning), published with the version
    store.publish(
        manifest,
        (folder / version / "model.onnx").read_bytes(),
        native_weights=(folder / version / weights.file).read_bytes() if weights else None,
    )
    return version


def enable_smoke_user(cognito, pool_id: str) -> PoolUser:
    """The smoke-test user in SMOKE_GROUP, enabled, with a new random password (32 characters and each kind
    a password policy may require: upper and lower case, a digit, a symbol)."""
    user = PoolUser(SMOKE_USERNAME, secrets.token_urlsafe(21) + "Aa1-", (SMOKE_GROUP,))
    create_user(cognito, pool_id, user)
    cognito.admin_enable_user(UserPoolId=pool_id, Username=user.username)
    return user


def smoke_test_stack(cognito, outputs: dict[str, str], region: str, smoke: Callable = smoke_test.run) -> bool:
    user = enable_smoke_user(cognito, outputs["UserPoolId"])
    try:
        auth = smoke_test.SignIn(user.username, user.password, client_id=outputs["UserPoolClientId"], region=region)
        return smoke(outputs["ApiUrl"], auth, expect_models=MODELS_TO_SEED)
    finally:
        cognito.admin_disable_user(UserPoolId=outputs["UserPoolId"], Username=user.username)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.deploy",
        description="sam build + sam deploy --config-env ENV, publish missing models, smoke-test the stack. "
        "Any other option goes to sam deploy as it is. NOT FOR CLINICAL USE.",
    )
    parser.add_argument("--env", required=True, choices=ENVIRONMENTS, help="a samconfig.toml environment")
    parser.add_argument("--template-file", type=Path, help="deploy this packaged template (no build)")
    parser.add_argument("--skip-build", action="store_true", help="deploy what the last sam build built")
    parser.add_argument(
        "--yes",
        "--no-confirm-changeset",
        dest="yes",
        action="store_true",
        help="deploy the change set without asking (also when CI is set)",
    )
    parser.add_argument("--region", help="the AWS region (default: the environment's in samconfig.toml)")
    parser.add_argument(
        "--parameter",
        "--parameter-overrides",
        dest="parameters",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters for this deploy, laid over samconfig.toml's",
    )
    parser.add_argument(
        "--local-models", type=Path, help="this machine's published models (default: make run's mirror)"
    )
    args, unknown = parser.parse_known_args(argv)
    args.sam_args = unknown
    return args


def deploy(args: argparse.Namespace, run: Callable = subprocess.run, smoke: Callable = smoke_test.run) -> str:
    """Every step; returns the API's URL."""
    import boto3

    from med_classifier.adapters.model_store import ModelStore
    from training.settings import training_settings

    env = environment(args.env, region=args.region)
    session = boto3.Session(region_name=env.region)
    sts = session.client("sts")
    problem = credentials_problem(sts)
    if problem:
        raise Refusal(problem)
    print(f"[deploy] {env.stack_name} in {env.region}, account {sts.get_caller_identity()['Account']}", flush=True)
    commands = sam_commands(
        env,
        template_file=args.template_file,
        skip_build=args.skip_build,
        confirm=not (args.yes or training_settings().ci),
        parameter_overrides=parameters(args.parameters),
        sam_args=args.sam_args,
    )
    run_commands(commands, run)
    outputs = stack_outputs(session.client("cloudformation"), env.stack_name)
    store = ModelStore(outputs["ModelsBucketName"], session.client("s3"))
    publish_missing_models(store, MODELS_TO_SEED, args.local_models or local_models_dir(), env.region, run)
    if not smoke_test_stack(session.client("cognito-idp"), outputs, env.region, smoke):
        raise Refusal(f"the smoke test failed against {outputs['ApiUrl']} (the stack stays deployed)")
    return outputs["ApiUrl"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        url = deploy(args)
    except Refusal as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    print(f"\n  Deployed and smoke-tested — NOT FOR CLINICAL USE\n    web page  {url}/\n    API docs  {url}/docs\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
