"""The SAM template lints clean and keeps its security and runtime guarantees.

Offline: cfn-lint and `sam validate --lint` need no AWS credentials or network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import samtranslator
from cfnlint.api import ManualArgs, lint_file
from samcli.yamlhelper import yaml_parse

from scripts.local_iam import translate
from scripts.local_runner.api import yaml_safe_loader_preserved

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
RUNTIME_LAYER_DIR = REPO_ROOT / "layers" / "runtime"
DEV_LOCK_PATH = REPO_ROOT / "requirements.lock"
VENV_BIN = Path(sys.executable).parent
LAMBDA_RUNTIME = "python3.12"

with yaml_safe_loader_preserved():  # SAM's parser would change yaml.safe_load for the whole test run
    TEMPLATE = yaml_parse(TEMPLATE_PATH.read_text())
RESOURCES = TEMPLATE["Resources"]
GLOBAL_FUNCTION = TEMPLATE["Globals"]["Function"]


def resources_of_type(resource_type: str) -> dict[str, dict]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == resource_type}


FUNCTIONS = resources_of_type("AWS::Serverless::Function")
BUCKETS = resources_of_type("AWS::S3::Bucket")
BUCKET_POLICIES = resources_of_type("AWS::S3::BucketPolicy")


def sam_policy_template_names() -> set[str]:
    data = Path(samtranslator.__file__).parent / "policy_templates_data" / "policy_templates.json"
    return set(json.loads(data.read_text())["Templates"])


def translated_template() -> dict:
    """The CloudFormation that the SAM transform makes of the template, offline (scripts/local_iam.py)."""
    return translate(TEMPLATE)


# --- linters ----------------------------------------------------------------------------


def test_cfn_lint_reports_nothing():
    matches = lint_file(TEMPLATE_PATH, config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


def test_sam_validate_lint_passes():
    result = subprocess.run(
        [str(VENV_BIN / "sam"), "validate", "--lint", "--template-file", str(TEMPLATE_PATH), "--region", "us-east-1"],
        cwd=REPO_ROOT,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- buckets: private, encrypted, TLS only ---------------------------------------------------


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_bucket_blocks_all_public_access(bucket):
    block = BUCKETS[bucket]["Properties"]["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_bucket_is_encrypted_at_rest(bucket):
    rules = BUCKETS[bucket]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    algorithms = {rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules}
    assert algorithms and algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_bucket_policy_denies_insecure_transport(bucket):
    policies = [p for p in BUCKET_POLICIES.values() if p["Properties"]["Bucket"] == {"Ref": bucket}]
    assert len(policies) == 1, f"{bucket} needs exactly one bucket policy"
    statements = policies[0]["Properties"]["PolicyDocument"]["Statement"]
    bucket_arn = {"Fn::GetAtt": [bucket, "Arn"]}
    objects_arn = {"Fn::Sub": "${" + bucket + ".Arn}/*"}

    def denies_plain_http(statement: dict) -> bool:
        secure_transport = statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
        return (
            statement["Effect"] == "Deny"
            and statement["Principal"] in ("*", {"AWS": "*"})
            and statement["Action"] in ("s3:*", ["s3:*"])
            and bucket_arn in statement["Resource"]
            and objects_arn in statement["Resource"]
            and str(secure_transport).lower() == "false"
        )

    assert any(denies_plain_http(s) for s in statements)


# --- functions: runtime, endpoint override, least privilege -------------------------------


def test_functions_run_python312_set_once_in_globals():
    assert GLOBAL_FUNCTION["Runtime"] == LAMBDA_RUNTIME
    overriding = [name for name, f in FUNCTIONS.items() if "Runtime" in f.get("Properties", {})]
    assert overriding == []


def test_aws_endpoint_url_is_declared_in_globals_and_empty():
    # Empty on AWS; local env-vars files point it at moto.
    assert GLOBAL_FUNCTION["Environment"]["Variables"]["AWS_ENDPOINT_URL"] == ""
    for name, function in FUNCTIONS.items():
        variables = function.get("Properties", {}).get("Environment", {}).get("Variables", {})
        assert variables.get("AWS_ENDPOINT_URL", "") == "", f"{name} overrides AWS_ENDPOINT_URL"


MANAGED_POLICIES = resources_of_type("AWS::IAM::ManagedPolicy")


def inline_statements(function: str) -> list[dict]:
    return [s for policy in FUNCTIONS[function]["Properties"]["Policies"] for s in policy.get("Statement", [])]


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_function_permissions_are_exact_statements_or_this_templates_managed_policies(function):
    # No SAM policy templates: each grants more than any function here calls (S3ReadPolicy: versions,
    # lifecycle, the whole bucket; DynamoDBCrudPolicy: DeleteItem, Scan, Batch*, every index...).
    properties = FUNCTIONS[function]["Properties"]
    assert "Role" not in properties, "a custom role bypasses this check"
    policies = properties.get("Policies", [])
    assert isinstance(policies, list) and policies, "every function declares its (least) privileges"
    for policy in policies:
        assert isinstance(policy, dict), policy
        assert not set(policy) & sam_policy_template_names(), f"{policy}: a SAM policy template, not exact statements"
        if "Ref" in policy:  # SAM has no policy template for CreateTrainingJob/SubmitJob
            assert len(policy) == 1 and policy["Ref"] in MANAGED_POLICIES, f"{policy} is not defined here"
            continue
        assert set(policy) == {"Version", "Statement"} and policy["Version"] == "2012-10-17", policy
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and statement.get("Sid"), statement
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement
            assert all("*" not in action for action in as_list(statement["Action"])), statement


def resource_name(resource) -> str:
    """!GetAtt X.Arn -> "X"; !Sub "${X.Arn}/rest" -> "X/rest" (for comparing with the table below)."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        logical_id, attribute = resource["Fn::GetAtt"]
        assert attribute == "Arn"
        return logical_id
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        return re.sub(r"\$\{(\w+)\.Arn\}", r"\1", resource["Fn::Sub"])
    raise AssertionError(f"unexpected resource {resource!r}")


def granted(function: str) -> set[tuple[str, str]]:
    return {
        (action, resource_name(resource))
        for statement in inline_statements(function)
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }


def expand(grants: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {(action, resource) for resource, actions in grants.items() for action in actions}


READ_MODELS = {"ModelsBucket/models/*": ["s3:GetObject"], "ModelsBucket": ["s3:ListBucket"]}
# What each function's code calls (adapters: model_store, s3_uploads, upload_counter, jobs_table; the
# domain's Retraining methods each function reaches), resource by resource. The managed policies
# (RetrainLaunchPolicy, RetrainDescribePolicy, UploadCheckPolicy) are checked on their own.
# UploadCounter's count is a TransactWriteItems (a Put and an Update): IAM authorises its items as
# PutItem and UpdateItem, and has no TransactWriteItems action.
# The predict functions' drift capture batches (adapters/capture_store.py), nothing else of that bucket.
WRITE_CAPTURES = {"MonitoringBucket/captures/*": ["s3:PutObject"]}
FUNCTION_GRANTS = {
    "PredictFunction": {
        **READ_MODELS,
        "UploadCountsTable": ["dynamodb:GetItem"],  # Retraining.status: the counter
        "JobsTable/index/by-model": ["dynamodb:Query"],  # Retraining.status: recent jobs
        **WRITE_CAPTURES,
        "MonitoringBucket/drift/*": ["s3:GetObject"],  # GET /models/{model}/drift
        "MonitoringBucket": ["s3:ListBucket"],  # its 404 before the first report
    },
    "ImagePredictFunction": {**READ_MODELS, **WRITE_CAPTURES},
    "RetrainingApiFunction": {
        **READ_MODELS,
        "UploadsBucket/uploads/*": ["s3:PutObject"],  # the presigned POST's signer
        "UploadCountsTable": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
        "JobsTable": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
    },
    "UploadCounterFunction": {
        "UploadCountsTable": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
        "JobsTable": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
    },
    "JobStateFunction": {
        "UploadCountsTable": ["dynamodb:UpdateItem"],
        "JobsTable": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
    },
    "ReconcilerFunction": {
        "UploadCountsTable/index/active-claims": ["dynamodb:Scan"],
        "UploadCountsTable": ["dynamodb:UpdateItem"],
        "JobsTable": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
    },
    # Golden examples from the production manifests, through the new versions (qualified ARNs only),
    # and the hook's outcome to this stack's deployment groups.
    # Drift monitoring: the production manifests, a window's captures, the reports.
    "DriftMonitorFunction": {
        **READ_MODELS,
        "MonitoringBucket/captures/*": ["s3:GetObject"],
        "MonitoringBucket": ["s3:ListBucket"],
        "MonitoringBucket/drift/*": ["s3:PutObject"],
    },
    "PreTrafficHookFunction": {
        **READ_MODELS,
        "PredictFunction:*": ["lambda:InvokeFunction"],
        "ImagePredictFunction:*": ["lambda:InvokeFunction"],
        "arn:${AWS::Partition}:codedeploy:${AWS::Region}:${AWS::AccountId}:deploymentgroup:"
        "${ServerlessDeploymentApplication}/*": ["codedeploy:PutLifecycleEventHookExecutionStatus"],
    },
}
FUNCTION_MANAGED_POLICIES = {
    "PredictFunction": set(),
    "ImagePredictFunction": set(),
    "RetrainingApiFunction": {"RetrainLaunchPolicy"},
    "UploadCounterFunction": {"RetrainLaunchPolicy", "UploadCheckPolicy"},
    "JobStateFunction": {"RetrainLaunchPolicy"},
    "ReconcilerFunction": {"RetrainLaunchPolicy", "RetrainDescribePolicy"},
    "PreTrafficHookFunction": set(),
    "DriftMonitorFunction": set(),
}


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_each_function_may_call_exactly_what_its_code_calls(function):
    assert granted(function) == expand(FUNCTION_GRANTS[function])
    managed = {p["Ref"] for p in FUNCTIONS[function]["Properties"]["Policies"] if "Ref" in p}
    assert managed == FUNCTION_MANAGED_POLICIES[function]


def test_no_function_writes_the_models_bucket_and_only_the_retraining_api_signs_uploads():
    writes = {"s3:PutObject", "s3:DeleteObject"}
    for function in FUNCTIONS:
        for action, resource in granted(function):
            assert not (action in writes and resource.startswith("ModelsBucket")), function
            if action in writes and resource.startswith("UploadsBucket"):
                assert (function, resource) == ("RetrainingApiFunction", "UploadsBucket/uploads/*")


def test_the_upload_checks_write_only_quarantine_and_remove_only_uploads():
    grants = {
        (action, resource_name(resource))
        for statement in policy_statements(RESOURCES["UploadCheckPolicy"])
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }
    assert grants == {
        ("s3:GetObject", "UploadsBucket/uploads/*"),
        ("s3:DeleteObject", "UploadsBucket/uploads/*"),
        ("s3:PutObject", "UploadsBucket/quarantine/*"),
        ("s3:ListBucket", "UploadsBucket"),
    }


def test_the_training_role_reads_its_channels_and_writes_only_versions_and_pointers():
    statements = {s["Sid"]: s for s in policy_statements(RESOURCES["TrainingJobRole"])}
    grants = {
        (action, resource_name(resource))
        for sid, statement in statements.items()
        if not sid.startswith(("JobLogs", "EcrLogin"))
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }
    assert grants == {
        ("s3:GetObject", "UploadsBucket/uploads/*"),
        ("s3:GetObject", "UploadsBucket/${OriginalDataPrefix}/*"),  # only when OriginalDataPrefix is set
        ("s3:ListBucket", "UploadsBucket"),
        ("s3:GetObject", "ModelsBucket/models/*"),
        ("s3:ListBucket", "ModelsBucket"),
        ("s3:PutObject", "ModelsBucket/models/*/*/model.onnx"),
        ("s3:PutObject", "ModelsBucket/models/*/*/model.pt"),  # native weights, for fine-tuning
        ("s3:PutObject", "ModelsBucket/models/*/*/model.weights.h5"),
        ("s3:PutObject", "ModelsBucket/models/*/*/manifest.json"),
        ("s3:PutObject", "ModelsBucket/models/*/production.json"),  # the job promotes itself
        ("s3:DeleteObject", "ModelsBucket/models/*/*/model.onnx"),  # a failed publish; never the pointer
        ("s3:DeleteObject", "ModelsBucket/models/*/*/model.pt"),
        ("s3:DeleteObject", "ModelsBucket/models/*/*/model.weights.h5"),
        ("s3:DeleteObject", "ModelsBucket/models/*/*/manifest.json"),
        ("s3:PutObject", "ModelsBucket/training-output/*"),
        ("dynamodb:UpdateItem", "JobsTable"),
        ("ecr:BatchGetImage", "TrainingImageRepository"),
        ("ecr:GetDownloadUrlForLayer", "TrainingImageRepository"),
        ("ecr:BatchCheckLayerAvailability", "TrainingImageRepository"),
    }
    # Version files are created, never replaced (ModelStore.publish sends If-None-Match); the pointer moves.
    assert statements["CreateVersionFiles"]["Condition"] == {"Null": {"s3:if-none-match": "false"}}
    assert "Condition" not in statements["MovePointer"]
    # Listing the uploads bucket: the channels' prefixes only, never quarantine/.
    prefixes = statements["ListChannels"]["Condition"]["StringLike"]["s3:prefix"]["Fn::If"]
    assert prefixes == ["HasOriginalData", ["uploads/*", {"Fn::Sub": "${OriginalDataPrefix}/*"}], ["uploads/*"]]
    original = RESOURCES["TrainingJobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][1]
    assert original["Fn::If"][0] == "HasOriginalData" and original["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    # <prefix>/* is the data set only if the prefix has no slash at either end.
    pattern = re.compile(PARAMETERS["OriginalDataPrefix"]["AllowedPattern"])
    assert [bool(pattern.match(p)) for p in ("", "datasets", "data/sets", "/datasets", "datasets/", "a//b")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_the_training_image_comes_from_this_stacks_scanned_immutable_repository():
    repository = RESOURCES["TrainingImageRepository"]["Properties"]
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    rules = json.loads(repository["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert {rule["selection"]["tagStatus"] for rule in rules} == {"untagged", "any"}
    image_uri = {
        "Fn::If": [
            "HasTrainingImageUri",
            {"Ref": "TrainingImageUri"},
            {
                "Fn::If": [
                    "HasTrainingImageTag",
                    {"Fn::Sub": "${TrainingImageRepository.RepositoryUri}:${TrainingImageTag}"},
                    "",
                ]
            },
        ]
    }
    for function in ("RetrainingApiFunction", "UploadCounterFunction", "JobStateFunction", "ReconcilerFunction"):
        assert FUNCTIONS[function]["Properties"]["Environment"]["Variables"]["TRAINING_IMAGE_URI"] == image_uri
    pattern = re.compile(PARAMETERS["TrainingImageUri"]["AllowedPattern"])
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/med-classifier-training"
    assert pattern.match("") and pattern.match(f"{ecr}:1") and pattern.match(f"{ecr}@sha256:{'a' * 64}")
    assert not pattern.match(ecr) and not pattern.match("docker.io/library/python:3.12")  # a tag, and ECR


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def is_wildcard_resource(resource) -> bool:
    """`*`, `arn:aws:s3:::*`, `arn:aws:s3:::*/*`; not `arn:aws:s3:::${bucketName}/*`."""
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        # Policy templates put their parameters in the Sub's variable map: fill in the literal ones.
        text, *variables = as_list(resource["Fn::Sub"])
        for name, value in (variables[0] if variables else {}).items():
            if isinstance(value, str):
                text = text.replace("${" + name + "}", value)
        resource = text
    if not isinstance(resource, str):  # Ref / GetAtt of a specific resource
        return False
    if re.match(r"\$\{\w+\.Arn\}", resource):  # under one resource of this stack, e.g. a function's versions
        return False
    # The resource part of arn:partition:service:region:account:resource (which may hold colons).
    return set(resource.split(":", 5)[-1]) <= {"*", "/"}


# The one action AWS offers no resource-level permission for; the training role needs it to pull its image.
# Actions IAM cannot scope to a resource (the service authorization reference lists none).
RESOURCELESS_ACTIONS = {"ecr:GetAuthorizationToken", "batch:DescribeJobs"}


def policy_statements(resource: dict) -> list[dict]:
    properties = resource["Properties"]
    documents = (
        [properties["PolicyDocument"]]
        if "PolicyDocument" in properties
        else [p["PolicyDocument"] for p in properties.get("Policies", [])]
    )
    statements = [s for document in documents for s in as_list(document["Statement"])]
    # Conditional statements (Fn::If [condition, statement, AWS::NoValue]) count as their statement.
    return [s["Fn::If"][1] if "Fn::If" in s else s for s in statements]


def test_generated_iam_policies_have_no_wildcard_actions_or_resources():
    resources = translated_template()["Resources"]
    holders = {n: r for n, r in resources.items() if r["Type"] in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy")}
    assert any(r["Type"] == "AWS::IAM::Role" for r in holders.values())
    for name, resource in holders.items():
        for statement in policy_statements(resource):
            actions = as_list(statement["Action"])
            resources_ = as_list(statement["Resource"])
            assert not [a for a in actions if a == "*" or a.endswith(":*")], (name, actions)
            if set(actions) <= RESOURCELESS_ACTIONS:
                continue
            assert not [r for r in resources_ if is_wildcard_resource(r)], (name, resources_)


def test_only_sagemaker_may_receive_the_training_role():
    statements = policy_statements(RESOURCES["RetrainLaunchPolicy"])
    (pass_role,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Resource"] == {"Fn::GetAtt": ["TrainingJobRole", "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


OPEN_ROUTES = {("/", "GET"), ("/health", "GET"), ("/openapi.json", "GET"), ("/docs", "GET"), ("/auth/config", "GET")}


def test_every_route_but_the_page_health_docs_and_sign_in_config_needs_the_cognito_authorizer():
    auth = RESOURCES["MedClassifierApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "CognitoAuthorizer"
    assert auth["Authorizers"]["CognitoAuthorizer"] == {
        "UserPoolArn": {"Fn::GetAtt": ["UserPool", "Arn"]},
        "Identity": {"Header": "Authorization"},
    }
    assert auth["AddDefaultAuthorizerToCorsPreflight"] is False  # a browser's preflight carries no token
    routes = {
        (ev["Properties"]["Path"], ev["Properties"]["Method"]): ev["Properties"].get("Auth")
        for fn in FUNCTIONS.values()
        for ev in fn["Properties"].get("Events", {}).values()
        if ev["Type"] == "Api"
    }
    assert {route for route, route_auth in routes.items() if route_auth == {"Authorizer": "NONE"}} == OPEN_ROUTES
    assert {route_auth for route, route_auth in routes.items() if route not in OPEN_ROUTES} == {None}  # the default
    assert "UsagePlan" not in auth and "MedClassifierApiApiKey" not in RESOURCES  # no API key anywhere


def test_the_user_pool_admits_only_users_an_administrator_creates_into_two_groups():
    pool = RESOURCES["UserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] >= 12
    assert RESOURCES["UserPool"]["DeletionPolicy"] == "Retain"  # the users outlive the stack
    client = RESOURCES["UserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is False and client["PreventUserExistenceErrors"] == "ENABLED"
    assert "ALLOW_ADMIN_USER_PASSWORD_AUTH" not in client["ExplicitAuthFlows"]
    groups = {
        r["Properties"]["GroupName"]: r["Properties"]["Precedence"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::Cognito::UserPoolGroup"
    }
    assert groups == {"clinicians": 20, "ml-admins": 10}
    predict_env = FUNCTIONS["PredictFunction"]["Properties"]["Environment"]["Variables"]
    assert (predict_env["USER_POOL_ID"], predict_env["USER_POOL_CLIENT_ID"]) == (
        {"Ref": "UserPool"},
        {"Ref": "UserPoolClient"},
    )


def test_the_web_page_is_served_at_the_root_by_the_predict_function_without_sign_in():
    pages = [
        (f, ev["Properties"])
        for f, fn in FUNCTIONS.items()
        for ev in fn["Properties"].get("Events", {}).values()
        if ev["Type"] == "Api" and ev["Properties"]["Path"] == "/"
    ]
    assert [(f, p["Method"], p["RestApiId"]) for f, p in pages] == [
        ("PredictFunction", "GET", {"Ref": "MedClassifierApi"})
    ]
    assert pages[0][1]["Auth"] == {"Authorizer": "NONE"}
    code = REPO_ROOT / FUNCTIONS["PredictFunction"]["Properties"]["CodeUri"]
    assert (code / "static" / "index.html").is_file()  # shipped with the function's code
    # The page's presigned POSTs are cross-origin: the uploads bucket must allow them.
    (rule,) = RESOURCES["UploadsBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    assert "POST" in rule["AllowedMethods"]


def test_upload_notifications_reach_the_counter_through_a_queue_with_a_dead_letter_queue():
    bucket = RESOURCES["UploadsBucket"]["Properties"]
    (notification,) = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert notification["Queue"] == {"Fn::GetAtt": ["UploadQueue", "Arn"]}
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "uploads/"}]
    queue = RESOURCES["UploadQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["UploadDeadLetterQueue", "Arn"]}
    counter = FUNCTIONS["UploadCounterFunction"]["Properties"]
    (source,) = counter["Events"].values()
    assert source["Type"] == "SQS" and source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["VisibilityTimeout"] >= 6 * counter["Timeout"]  # Lambda's advice for SQS sources


# --- concurrency and timeouts: one client cannot take the account's concurrency ---------------

PARAMETERS = TEMPLATE["Parameters"]
CONDITIONS = TEMPLATE.get("Conditions", {})
ACCOUNT_DEFAULT_CONCURRENCY = 1000  # a Lambda account's default concurrency limit per region
LAMBDA_MIN_UNRESERVED = 100  # Lambda refuses reservations that leave less unreserved
API_GATEWAY_INTEGRATION_TIMEOUT = 29  # seconds, REST API default
# function -> (its reserved-concurrency parameter, the condition -1 turns off, the default)
RESERVED_CONCURRENCY = {
    "PredictFunction": ("PredictReservedConcurrency", "ReservePredictConcurrency", 50),
    "ImagePredictFunction": ("ImagePredictReservedConcurrency", "ReserveImagePredictConcurrency", 20),
    "RetrainingApiFunction": ("RetrainingApiReservedConcurrency", "ReserveRetrainingApiConcurrency", 10),
}


def api_functions() -> list[str]:
    return sorted(
        name
        for name, function in FUNCTIONS.items()
        if any(event["Type"] == "Api" for event in function["Properties"].get("Events", {}).values())
    )


def test_every_api_function_has_a_reserved_concurrency_parameter():
    assert api_functions() == sorted(RESERVED_CONCURRENCY)


def reserved_concurrency_if(function: str) -> dict:
    parameter, condition, _ = RESERVED_CONCURRENCY[function]
    return {"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}


@pytest.mark.parametrize("function", sorted(RESERVED_CONCURRENCY))
def test_api_function_reserves_its_parameters_concurrency_and_minus_one_turns_it_off(function):
    parameter_name, condition, default = RESERVED_CONCURRENCY[function]
    parameter = PARAMETERS[parameter_name]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", default, -1)
    assert function in parameter["Description"]
    assert FUNCTIONS[function]["Properties"]["ReservedConcurrentExecutions"] == reserved_concurrency_if(function)
    assert CONDITIONS[condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter_name}, "-1"]}]}


def test_default_reservations_leave_a_default_account_what_lambda_requires():
    reserved = sum(PARAMETERS[parameter]["Default"] for parameter, _, _ in RESERVED_CONCURRENCY.values())
    assert 0 < reserved <= ACCOUNT_DEFAULT_CONCURRENCY - LAMBDA_MIN_UNRESERVED


def test_upload_counter_concurrency_is_capped_on_its_queue_event():
    parameter = PARAMETERS["UploadCounterMaxConcurrency"]
    assert (parameter["Type"], parameter["MinValue"], parameter["MaxValue"]) == ("Number", 2, 1000)  # AWS's range
    assert 2 <= parameter["Default"] <= 1000
    (source,) = FUNCTIONS["UploadCounterFunction"]["Properties"]["Events"].values()
    assert source["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "UploadCounterMaxConcurrency"}}


def test_concurrency_settings_survive_the_sam_transform():
    resources = translated_template()["Resources"]
    for function in RESERVED_CONCURRENCY:
        assert resources[function]["Properties"]["ReservedConcurrentExecutions"] == reserved_concurrency_if(function)
    (mapping,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": "UploadCounterFunction"}
    ]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "UploadCounterMaxConcurrency"}}


@pytest.mark.parametrize("function", api_functions())
def test_api_function_times_out_before_api_gateway_does(function):
    # Else API Gateway answers 504 while the invocation runs on, holding its (reserved) concurrency.
    timeout = FUNCTIONS[function]["Properties"].get("Timeout", GLOBAL_FUNCTION["Timeout"])
    assert timeout < API_GATEWAY_INTEGRATION_TIMEOUT


def test_every_checkov_skip_names_a_check_and_gives_its_reason():
    # `make checkov` fails on any finding; one left unfixed is skipped beside its resource, with the reason.
    skips = [
        (name, skip)
        for name, resource in RESOURCES.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (name, skip)
        assert len(skip.get("comment", "").split()) >= 5, (name, skip)


# --- the inference runtime layer ---------------------------------------------------------


def test_runtime_layer_is_built_by_its_makefile():
    layer = RESOURCES["InferenceRuntimeLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "Architecture"}
    assert layer["Properties"]["CompatibleRuntimes"] == [LAMBDA_RUNTIME]
    makefile = (RUNTIME_LAYER_DIR / "Makefile").read_text()
    assert re.search(r"^build-InferenceRuntimeLayer:", makefile, re.MULTILINE)


def test_architecture_parameter_defaults_to_x86_64():
    # onnxruntime has crashed on arm64 zip/layer Lambdas (onnxruntime#10038).
    parameter = TEMPLATE["Parameters"]["Architecture"]
    assert parameter["Default"] == "x86_64"
    assert set(parameter["AllowedValues"]) == {"x86_64", "arm64"}
    assert GLOBAL_FUNCTION["Architectures"] == [{"Ref": "Architecture"}]


# Each function's request limits: a template parameter, read by that function, defaulting to its setting's default.
REQUEST_LIMITS = {
    ("PredictFunction", "MAX_REQUEST_BYTES"): "MaxPredictRequestBytes",
    ("ImagePredictFunction", "MAX_REQUEST_BYTES"): "MaxImageRequestBytes",
    ("ImagePredictFunction", "MAX_IMAGE_PIXELS"): "MaxImagePixels",
    ("ImagePredictFunction", "MAX_REQUEST_PIXELS"): "MaxRequestPixels",
    ("RetrainingApiFunction", "MAX_REQUEST_BYTES"): "MaxRetrainingRequestBytes",
}


@pytest.mark.parametrize("function, variable", sorted(REQUEST_LIMITS))
def test_request_limits_are_parameters_whose_defaults_are_the_settings_defaults(function, variable):
    from med_classifier.settings import FUNCTION_SETTINGS

    parameter = REQUEST_LIMITS[function, variable]
    assert FUNCTIONS[function]["Properties"]["Environment"]["Variables"][variable] == {"Ref": parameter}
    field = FUNCTION_SETTINGS[function].model_fields[variable.lower()]
    assert (TEMPLATE["Parameters"][parameter]["Type"], TEMPLATE["Parameters"][parameter]["Default"]) == (
        "Number",
        field.default,
    )


def test_refused_uploads_expire_from_quarantine_and_never_reach_the_counter():
    bucket = RESOURCES["UploadsBucket"]["Properties"]
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    quarantine = rules["expire-quarantine"]
    assert (quarantine["Prefix"], quarantine["ExpirationInDays"]) == ("quarantine/", {"Ref": "QuarantineRetentionDays"})
    assert TEMPLATE["Parameters"]["QuarantineRetentionDays"]["Default"] == 30
    # The counter is notified of uploads/ only: moving an object to quarantine/ counts nothing.
    (notification,) = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "uploads/"}]
