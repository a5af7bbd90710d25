"""The deploy rehearsal (`make rehearse`, scripts/rehearse/) on the real template, and on a copy with
AutoPublishAlias, SnapStart and a DeploymentPreference with a pre-traffic hook: each packaged, translated
and created in a fresh moto, every comparator then shown to fail on a property moto does not have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.local_resources import load_template
from scripts.rehearse.compare import COMPARATORS, Resource
from scripts.rehearse.gaps import SKIPPED_TYPES
from scripts.rehearse.rehearsal import rehearsal
from scripts.rehearse.report import render

# Both rehearsals start a moto server and run SAM CLI: one worker runs this module (xdist_group).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("deploy-rehearsal")]

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
API_FUNCTIONS = ("PredictFunction", "ImagePredictFunction", "RetrainingApiFunction")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The rehearsal of template.yaml, cfn-lint included; its moto runs until the module's tests are done."""
    with rehearsal(TEMPLATE, tmp_path_factory.mktemp("rehearsal")) as result:
        yield result


def canary_template(directory: Path) -> Path:
    """template.yaml with PredictFunction published to an alias `live` (SnapStart on versions) and shifted
    by CodeDeploy (canary, an alarm, a pre-traffic hook function that is given the new version)."""
    template = load_template(TEMPLATE)
    for resource in template["Resources"].values():  # the copy lives elsewhere: code paths made absolute
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = str(REPO_ROOT / properties[key])
    template["Resources"]["PredictFunction"]["Properties"] |= {
        "AutoPublishAlias": "live",
        "SnapStart": {"ApplyOn": "PublishedVersions"},
        "DeploymentPreference": {
            "Type": "Canary10Percent5Minutes",
            "Alarms": [{"Ref": "FunctionThrottlesAlarm"}],
            "Hooks": {"PreTraffic": {"Ref": "PreTrafficHookFunction"}},
        },
    }
    template["Resources"]["PreTrafficHookFunction"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": str(REPO_ROOT / "functions" / "reconciler"),
            "Handler": "app.lambda_handler",
            "FunctionName": {"Fn::Sub": "CodeDeployHook_${AWS::StackName}-pre-traffic"},
            "Environment": {"Variables": {"NEW_PREDICT_VERSION": {"Ref": "PredictFunction.Version"}}},
            "Policies": [
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "codedeploy:PutLifecycleEventHookExecutionStatus",
                            "Resource": "*",
                        }
                    ],
                }
            ],
        },
    }
    path = directory / "template.yaml"
    path.write_text(json.dumps(template))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    directory = tmp_path_factory.mktemp("canary")
    with rehearsal(canary_template(directory), directory / "out", run_lint=False) as result:
        yield result


def of_type(result, resource_type: str) -> list[str]:
    return [lid for lid, r in result.expected["Resources"].items() if r["Type"] == resource_type]


def test_the_template_deploys_on_moto_and_matches_everywhere_moto_can_tell(real):
    assert real.failures() == []
    assert real.stack.status == "CREATE_COMPLETE"
    comparison = real.comparison
    assert set(comparison.resources) | set(comparison.skipped) == set(real.expected["Resources"])
    assert set(comparison.skipped) == {lid for t in SKIPPED_TYPES for lid in of_type(real, t)}
    assert {"UserPool", "MedClassifierApiStage", "UploadsBucketPolicy", "JobStateFunctionEventInvokeConfig"} <= set(
        comparison.skipped
    )
    assert real.left_out == {
        "ApiGatewayCloudWatchRole": "ManageApiGatewayAccount",
        "ApiGatewayAccount": "ManageApiGatewayAccount",
        "AlarmEmailSubscription": "HasAlarmEmail",
        "WebAcl": "WafEnabled",
        "WebAclAssociation": "WafEnabled",
    }


def test_each_function_keeps_its_runtime_handler_memory_timeout_environment_and_code(real):
    for function in of_type(real, "AWS::Lambda::Function"):
        checks = real.comparison.resources[function].checks
        assert {"Runtime", "Handler", "MemorySize", "Timeout", "Environment", "Role", "Code"} <= {
            c.prop for c in checks
        }
        assert [c.message() for c in checks if c.status == "FAIL"] == []
    environment = {c.detail: c for c in real.comparison.resources["PredictFunction"].checks if c.prop == "Environment"}
    assert environment["MODELS_BUCKET"].status == "pass"
    assert environment["MODELS_BUCKET"].actual == real.stack.resources["ModelsBucket"]["PhysicalResourceId"]
    assert (environment["USER_POOL_ID"].status, environment["USER_POOL_ID"].depends_on) == ("not checked", ["UserPool"])


def test_every_route_of_the_api_events_is_a_method_with_its_authorizer_and_lambda_integration(real):
    events = [
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"], event["Properties"].get("Auth"), function)
        for function in API_FUNCTIONS
        for event in load_template(TEMPLATE)["Resources"][function]["Properties"]["Events"].values()
    ]
    routes = {c.detail: c for c in real.comparison.resources["MedClassifierApi"].checks if c.prop == "Body"}

    assert sorted(routes) == sorted(f"{method} {path}" for method, path, _, _ in events)
    for method, path, auth, function in events:
        route = routes[f"{method} {path}"]
        assert route.status == "pass"
        assert route.actual["AuthorizationType"] == ("NONE" if auth else "COGNITO_USER_POOLS")
        function_name = real.stack.resources[function]["PhysicalResourceId"]
        assert route.actual["Integration"]["Type"] == "AWS_PROXY"
        assert route.actual["Integration"]["Uri"].endswith(f":function:{function_name}/invocations")


def test_queues_tables_rules_and_roles_are_compared(real):
    props = {lid: {c.prop for c in r.checks} for lid, r in real.comparison.resources.items()}
    assert {"RedrivePolicy", "VisibilityTimeout"} <= props["UploadQueue"]
    assert {"KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes"} <= props["UploadCountsTable"]
    assert {"EventPattern", "Targets"} <= props["JobStateFunctionSageMakerJobState"]
    assert {"ScheduleExpression", "Targets"} <= props["ReconcilerFunctionSchedule"]
    assert {"BatchSize", "EventSourceArn", "ScalingConfig"} <= props["UploadCounterFunctionUploadQueue"]
    assert {"AssumeRolePolicyDocument", "Policies"} <= props["TrainingJobRole"]
    assert {"PolicyDocument"} <= props["RetrainLaunchPolicy"]


def test_only_the_outputs_of_skipped_resources_go_unresolved(real):
    statuses = {key: check.status for key, check in real.comparison.outputs.items()}
    assert {key for key, status in statuses.items() if status != "pass"} == {"UserPoolId", "UserPoolClientId"}
    assert real.comparison.outputs["UserPoolId"].depends_on == ["UserPool"]
    assert real.stack.outputs["ApiUrl"] == (
        f"https://{real.stack.resources['MedClassifierApi']['PhysicalResourceId']}.execute-api.us-east-1"
        ".amazonaws.com/v1"
    )


def test_cfn_lint_with_the_serverless_rules_finds_no_error_beyond_those_accepted(real):
    result = real.lint_result
    assert result.crashed == ""
    assert set(result.versions) == {"cfn-lint", "cfn-lint-serverless"}
    assert "--append-rules" in result.command
    assert [f.rule for f in result.findings if f.rule.startswith(("ES", "WS"))]  # the serverless rules ran
    assert result.errors() == [] and result.stale == []


def test_the_report_names_each_skip_and_the_result(real):
    report = render(real)
    assert "**PASS**" in report
    for skipped_type, why in SKIPPED_TYPES.items():
        assert f"| {skipped_type} |" in report and why in report
    assert "| PredictFunction | Environment USER_POOL_ID | UserPool |" in report


def test_aliases_versions_and_codedeploy_are_reported_as_skipped_not_crashed_on(canary):
    assert canary.failures() == []
    skipped = canary.comparison.skipped
    assert skipped["PredictFunctionAliaslive"] == "AWS::Lambda::Alias"
    assert skipped["PredictFunctionDeploymentGroup"] == "AWS::CodeDeploy::DeploymentGroup"
    assert "AWS::CodeDeploy::Application" in skipped.values()
    assert "PredictFunctionAliaslive" in canary.stand_ins
    versions = of_type(canary, "AWS::Lambda::Version")
    assert versions and all(
        [c.status for c in canary.comparison.resources[version].checks] == ["pass"] for version in versions
    )
    hook = {(c.prop, c.detail): c for c in canary.comparison.resources["PreTrafficHookFunction"].checks}
    assert hook["FunctionName", ""].actual == "CodeDeployHook_med-classifier-pre-traffic"
    predict = canary.stack.resources["PredictFunction"]["PhysicalResourceId"]
    new_version = hook["Environment", "NEW_PREDICT_VERSION"]  # a Ref to the version: its stand-in
    assert (new_version.status, new_version.actual.endswith(f":function:{predict}:1")) == ("pass", True)
    rows = {line.split(" | ")[0]: line for line in render(canary).splitlines() if line.startswith("| AWS::")}
    assert "PredictFunctionDeploymentGroup" in rows["| AWS::CodeDeploy::DeploymentGroup"]
    assert "PredictFunctionAliaslive" in rows["| AWS::Lambda::Alias"]


def _first(result, resource_type: str, logical_id: str | None = None) -> Resource:
    return next(
        r
        for r in result.comparison.resources.values()
        if r.type == resource_type and (logical_id is None or r.logical_id == logical_id)
    )


def _mismatch(result, resource_type: str, changes: dict, logical_id: str | None = None) -> tuple[str, list[str]]:
    """The comparator of `resource_type` on a resource (its first, else `logical_id`) with properties changed."""
    live = _first(result, resource_type, logical_id)
    changed = Resource(live.logical_id, live.type, live.props | changes, live.physical)
    COMPARATORS[resource_type](result.live, changed)
    return live.logical_id, [check.message() for check in changed.checks if check.status == "FAIL"]


TRUST_EDGE = {
    "Version": "2012-10-17",
    "Statement": [{"Action": ["sts:AssumeRole"], "Effect": "Allow", "Principal": {"Service": ["edge.amazonaws.com"]}}],
}
TRUST_LAMBDA = json.dumps(
    {**TRUST_EDGE, "Statement": [{**TRUST_EDGE["Statement"][0], "Principal": {"Service": ["lambda.amazonaws.com"]}}]},
    sort_keys=True,
)
KMS = {"SSEAlgorithm": "aws:kms"}
MOCK_ROUTE = {"/extra": {"get": {"x-amazon-apigateway-integration": {"type": "mock"}}}}

# Each comparator against one property the template would have and moto has not: (type, logical id (None:
# the first of its type; their ids carry a hash), changed properties, the failure message after the id).
# The rehearsed template has no AWS::Lambda::Version: the canary's has (below). The API's routes: below.
MISMATCHES = [
    ("AWS::Lambda::Function", "PredictFunction", {"MemorySize": 512}, ".MemorySize: template 512, moto 1024"),
    (
        "AWS::Lambda::Permission",
        "PredictFunctionPagePermissionStage",
        {"Action": "lambda:InvokeAsync"},
        ".Action: template 'lambda:InvokeAsync', moto 'lambda:InvokeFunction'",
    ),
    (
        "AWS::Lambda::LayerVersion",
        None,
        {"CompatibleRuntimes": ["python3.13"]},
        '.CompatibleRuntimes: template ["python3.13"], moto ["python3.12"]',
    ),
    (
        "AWS::Lambda::EventSourceMapping",
        "UploadCounterFunctionUploadQueue",
        {"BatchSize": 5},
        ".BatchSize: template 5, moto 10",
    ),
    (
        "AWS::IAM::Role",
        "PredictFunctionRole",
        {"AssumeRolePolicyDocument": TRUST_EDGE},
        f".AssumeRolePolicyDocument: template {json.dumps(TRUST_EDGE, sort_keys=True)}, moto {TRUST_LAMBDA}",
    ),
    (
        "AWS::IAM::ManagedPolicy",
        "RetrainLaunchPolicy",
        {"Description": "x"},
        ".Description: template 'x', moto 'Start retraining jobs (SageMaker CreateTrainingJob or Batch SubmitJob) "
        "and nothing else.'",
    ),
    (
        "AWS::SQS::Queue",
        "UploadDeadLetterQueue",
        {"MessageRetentionPeriod": 60},
        ".MessageRetentionPeriod: template 60, moto '1209600'",
    ),
    (
        "AWS::DynamoDB::Table",
        "UploadCountsTable",
        {"KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]},
        '.KeySchema: template [{"AttributeName": "id", "KeyType": "HASH"}], '
        'moto [{"AttributeName": "pk", "KeyType": "HASH"}]',
    ),
    (
        "AWS::S3::Bucket",
        "ModelsBucket",
        {"BucketEncryption": {"ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": KMS}]}},
        '.BucketEncryption: template [{"BucketKeyEnabled": false, "KMSMasterKeyID": null, "SSEAlgorithm": '
        '"aws:kms"}], moto [{"BucketKeyEnabled": false, "KMSMasterKeyID": null, "SSEAlgorithm": "AES256"}]',
    ),
    ("AWS::Logs::LogGroup", "ApiAccessLogGroup", {"RetentionInDays": 7}, ".RetentionInDays: template 7, moto 90"),
    ("AWS::SNS::Topic", "AlarmTopic", {"DisplayName": "x"}, ".DisplayName: template 'x', moto 'MedClassifier alarms'"),
    ("AWS::KMS::Key", "AlarmTopicKey", {"EnableKeyRotation": False}, ".EnableKeyRotation: template false, moto true"),
    (
        "AWS::ECR::Repository",
        "TrainingImageRepository",
        {"ImageTagMutability": "MUTABLE"},
        ".ImageTagMutability: template 'MUTABLE', moto 'IMMUTABLE'",
    ),
    (
        "AWS::Events::Rule",
        "JobStateFunctionBatchJobState",
        {"EventPattern": {"source": ["aws.batch"]}},
        '.EventPattern: template {"source": ["aws.batch"]}, '
        'moto {"detail-type": ["Batch Job State Change"], "source": ["aws.batch"]}',
    ),
    ("AWS::ApiGateway::Deployment", None, {"StageName": "Prod"}, ".StageName: template 'Prod', moto 'Stage'"),
]


@pytest.mark.parametrize(
    ("resource_type", "logical_id", "changes", "message"), MISMATCHES, ids=[m[0] for m in MISMATCHES]
)
def test_each_comparator_fails_on_a_property_moto_does_not_have(real, resource_type, logical_id, changes, message):
    logical_id, failures = _mismatch(real, resource_type, changes, logical_id)
    assert failures == [logical_id + message]


def test_the_api_comparator_fails_on_a_route_moto_does_not_have(real):
    api = _first(real, "AWS::ApiGateway::RestApi")
    body = api.props["Body"] | {"paths": api.props["Body"]["paths"] | MOCK_ROUTE}
    logical_id, failures = _mismatch(real, "AWS::ApiGateway::RestApi", {"Body": body, "Description": "x"})
    route = '{"ApiKeyRequired": false, "AuthorizationType": "NONE", "Integration": '
    route += '{"IntegrationHttpMethod": null, "Type": "MOCK", "Uri": null}}'
    assert failures == [
        f"{logical_id}.Description: template 'x', moto 'Medical-classifier inference API - NOT FOR CLINICAL USE.'",
        f"{logical_id}.Body [GET /extra]: template {route}, moto '<missing>'",
    ]


def test_the_version_comparator_fails_on_a_function_without_versions(canary):
    other = canary.stack.resources["ReconcilerFunction"]["PhysicalResourceId"]  # publishes no version
    logical_id, failures = _mismatch(canary, "AWS::Lambda::Version", {"FunctionName": other})
    assert failures == [f"{logical_id}.FunctionName [a published version]: template '{other}', moto '<missing>'"]


def test_every_comparator_is_shown_failing():
    shown = {m[0] for m in MISMATCHES} | {"AWS::ApiGateway::RestApi", "AWS::Lambda::Version"}
    assert shown == set(COMPARATORS)
