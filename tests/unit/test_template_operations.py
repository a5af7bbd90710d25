"""template.yaml's operations guarantees: access logs (S3 and API Gateway), log retention,
alarms to one topic, retain policies and the optional WAF (README, Operations: logs, alarms,
retention). Offline: the template is only parsed (and SAM-transformed for the API stage).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from samcli.yamlhelper import yaml_parse

from scripts.local_runner.api import yaml_safe_loader_preserved

REPO_ROOT = Path(__file__).resolve().parents[2]
with yaml_safe_loader_preserved():  # SAM's parser would change yaml.safe_load for the whole test run
    TEMPLATE = yaml_parse((REPO_ROOT / "template.yaml").read_text())
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]
CONDITIONS = TEMPLATE["Conditions"]
GLOBAL_VARIABLES = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
LOG_BUCKET = "AccessLogsBucket"
TOPIC = {"Ref": "AlarmTopic"}
# The retention values CloudWatch Logs accepts (PutRetentionPolicy).
CLOUDWATCH_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827]
CLOUDWATCH_RETENTION_DAYS += [2192, 2557, 2922, 3288, 3653]


def resources_of_type(resource_type: str) -> dict[str, dict]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == resource_type}


BUCKETS = resources_of_type("AWS::S3::Bucket")
TABLES = resources_of_type("AWS::DynamoDB::Table")
FUNCTIONS = resources_of_type("AWS::Serverless::Function")
LOG_GROUPS = resources_of_type("AWS::Logs::LogGroup")
ALARMS = resources_of_type("AWS::CloudWatch::Alarm")
QUEUES = resources_of_type("AWS::SQS::Queue")


def dead_letter_queues() -> set[str]:
    """Queues some queue's redrive policy or some function's failure destination points at."""
    text = json.dumps({k: v for k, v in RESOURCES.items() if v["Type"] != "AWS::CloudWatch::Alarm"})
    return {
        queue
        for queue in QUEUES
        if f'"deadLetterTargetArn": {{"Fn::GetAtt": ["{queue}", "Arn"]}}' in text
        or f'"Destination": {{"Fn::GetAtt": ["{queue}", "Arn"]}}' in text
    }


def single_metric_alarms(namespace: str, metric: str) -> dict[str, dict]:
    return {
        name: alarm["Properties"]
        for name, alarm in ALARMS.items()
        if alarm["Properties"].get("Namespace") == namespace and alarm["Properties"].get("MetricName") == metric
    }


def dimensions(alarm: dict) -> dict:
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


# --- S3 server access logs ----------------------------------------------------------------


def test_the_log_bucket_is_private_encrypted_with_sse_s3_and_expires_logs_by_its_parameter():
    bucket = BUCKETS[LOG_BUCKET]["Properties"]
    assert "LoggingConfiguration" not in bucket  # it does not log into itself
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}  # log delivery cannot use SSE-KMS
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    expiring = [r for r in bucket["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert [(r["Status"], r["ExpirationInDays"]) for r in expiring] == [("Enabled", {"Ref": "AccessLogRetentionDays"})]
    assert not any("Prefix" in r or "Filter" in r for r in expiring)  # every bucket's logs
    parameter = PARAMETERS["AccessLogRetentionDays"]
    assert (parameter["Type"], parameter["Default"]) == ("Number", 365)


@pytest.mark.parametrize("bucket", sorted(set(BUCKETS) - {LOG_BUCKET}))
def test_every_other_bucket_logs_to_the_log_bucket_under_a_prefix_of_its_own(bucket):
    logging = BUCKETS[bucket]["Properties"]["LoggingConfiguration"]
    assert logging["DestinationBucketName"] == {"Ref": LOG_BUCKET}
    prefixes = [b["Properties"]["LoggingConfiguration"]["LogFilePrefix"] for n, b in BUCKETS.items() if n != LOG_BUCKET]
    assert logging["LogFilePrefix"].endswith("/") and prefixes.count(logging["LogFilePrefix"]) == 1


def test_s3_log_delivery_may_write_each_buckets_prefix_for_this_accounts_buckets_only():
    (policy,) = [
        p["Properties"]
        for p in resources_of_type("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": LOG_BUCKET}
    ]
    (delivery,) = [
        s for s in policy["PolicyDocument"]["Statement"] if s["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    ]
    assert (delivery["Effect"], delivery["Action"]) == ("Allow", "s3:PutObject")
    sources = {bucket for bucket in BUCKETS if bucket != LOG_BUCKET}
    assert sorted(delivery["Condition"]["ArnLike"]["aws:SourceArn"], key=str) == sorted(
        ({"Fn::GetAtt": [b, "Arn"]} for b in sources), key=str
    )
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    prefixes = {BUCKETS[b]["Properties"]["LoggingConfiguration"]["LogFilePrefix"] for b in sources}
    assert sorted(delivery["Resource"], key=str) == sorted(
        ({"Fn::Sub": "${" + LOG_BUCKET + ".Arn}/" + prefix + "*"} for prefix in prefixes), key=str
    )


# --- retain: the data outlives the stack ------------------------------------------------------


@pytest.mark.parametrize("resource", sorted({*BUCKETS, *TABLES}))
def test_every_bucket_and_table_is_retained_on_delete_and_on_replacement(resource):
    assert RESOURCES[resource].get("DeletionPolicy") == "Retain"
    assert RESOURCES[resource].get("UpdateReplacePolicy") == "Retain"


# --- log groups with retention ------------------------------------------------------------------


def test_log_retention_is_a_parameter_of_the_values_cloudwatch_accepts_defaulting_to_90_days():
    parameter = PARAMETERS["LogRetentionDays"]
    assert (parameter["Type"], parameter["Default"]) == ("Number", 90)
    assert parameter["AllowedValues"] == CLOUDWATCH_RETENTION_DAYS


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_logs_to_a_log_group_of_its_own_with_the_retention_parameter(function):
    log_group = FUNCTIONS[function]["Properties"]["LoggingConfig"]["LogGroup"]
    assert set(log_group) == {"Ref"} and log_group["Ref"] in LOG_GROUPS
    owners = [f for f, fn in FUNCTIONS.items() if logging_config(fn).get("LogGroup") == log_group]
    assert owners == [function]
    properties = LOG_GROUPS[log_group["Ref"]]["Properties"]
    assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert function in properties["LogGroupName"]["Fn::Sub"]


def logging_config(function: dict) -> dict:
    return function["Properties"].get("LoggingConfig", {})


def test_no_function_overrides_its_log_group_in_globals():
    # One shared group would mix every function's streams; each names its own above.
    assert "LoggingConfig" not in TEMPLATE["Globals"]["Function"]


# --- API Gateway access logs ----------------------------------------------------------------------


def access_log_setting() -> dict:
    return RESOURCES["MedClassifierApi"]["Properties"]["AccessLogSetting"]


def test_api_access_logs_go_to_a_log_group_with_the_retention_parameter():
    destination = access_log_setting()["DestinationArn"]
    assert destination == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert LOG_GROUPS["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_api_access_log_format_is_one_json_object_naming_the_request_and_its_caller():
    log_format = access_log_setting()["Format"]
    assert "\n" not in log_format  # one line a request
    fields = json.loads(log_format)
    assert fields["requestId"] == "$context.requestId"
    assert fields["sub"] == "$context.authorizer.claims.sub"  # the caller's Cognito user
    assert fields["ip"] == "$context.identity.sourceIp"
    for field in ("httpMethod", "resourcePath", "status", "responseLength", "requestTime", "integrationLatency"):
        assert fields[field] == f"$context.{field}"
    # Every value a quoted string: a variable API Gateway fills with "-" or text keeps the line JSON.
    assert all(isinstance(v, str) and re.fullmatch(r"\$context\.[\w.]+", v) for v in fields.values())


def test_the_api_skips_no_access_log_check():
    skips = RESOURCES["MedClassifierApi"].get("Metadata", {}).get("checkov", {}).get("skip", [])
    assert "CKV_AWS_76" not in [s["id"] for s in skips]


def test_the_api_gateway_account_role_is_set_only_when_asked_and_the_stage_waits_for_it():
    parameter = PARAMETERS["ManageApiGatewayAccountLogging"]
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == ("false", ["false", "true"])
    assert "once" in parameter["Description"] and "account" in parameter["Description"]
    assert CONDITIONS["ManageApiGatewayAccount"] == {"Fn::Equals": [{"Ref": "ManageApiGatewayAccountLogging"}, "true"]}
    account = resources_of_type("AWS::ApiGateway::Account")
    assert list(account) == ["ApiGatewayAccount"]
    assert account["ApiGatewayAccount"]["Condition"] == "ManageApiGatewayAccount"
    role = account["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    assert RESOURCES[role]["Condition"] == "ManageApiGatewayAccount"
    for name in ("ApiGatewayAccount", role):  # other APIs of the account keep logging after a delete
        assert RESOURCES[name]["DeletionPolicy"] == "Retain"
    # The API depends on a handle that references the account setting only under the condition.
    handle = RESOURCES["MedClassifierApi"]["DependsOn"]
    assert RESOURCES[handle]["Type"] == "AWS::CloudFormation::WaitConditionHandle"
    assert "Condition" not in RESOURCES[handle]
    assert {"Fn::If": ["ManageApiGatewayAccount", {"Ref": "ApiGatewayAccount"}, ""]} in RESOURCES[handle][
        "Metadata"
    ].values()


# --- alarms --------------------------------------------------------------------------------------


def test_the_alarm_topic_is_kms_encrypted_with_a_key_cloudwatch_may_use():
    topic = RESOURCES["AlarmTopic"]
    key = topic["Properties"]["KmsMasterKeyId"]
    # Not alias/aws/sns: CloudWatch alarms cannot publish to a topic under the AWS-managed key.
    assert key == {"Ref": "AlarmTopicKey"}
    key_properties = RESOURCES["AlarmTopicKey"]["Properties"]
    assert key_properties["EnableKeyRotation"] is True
    (cloudwatch,) = [
        s for s in key_properties["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_the_email_subscription_exists_only_when_an_address_is_given():
    assert PARAMETERS["AlarmEmail"]["Default"] == ""
    assert CONDITIONS["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    (subscription,) = resources_of_type("AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {"TopicArn": TOPIC, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}


@pytest.mark.parametrize("alarm", sorted(ALARMS))
def test_every_alarm_notifies_the_topic(alarm):
    assert ALARMS[alarm]["Properties"]["AlarmActions"] == [TOPIC]
    assert ALARMS[alarm]["Properties"]["TreatMissingData"] == "notBreaching"  # no data is no trouble


def test_there_are_dead_letter_queues_to_watch():
    assert dead_letter_queues() == {"UploadDeadLetterQueue", "JobStateDeadLetterQueue"}


@pytest.mark.parametrize("queue", sorted(dead_letter_queues()))
def test_every_dead_letter_queue_alarms_on_its_first_message(queue):
    watching = [
        a
        for a in single_metric_alarms("AWS/SQS", "ApproximateNumberOfMessagesVisible").values()
        if dimensions(a) == {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}}
    ]
    assert len(watching) == 1
    (alarm,) = watching
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_api_5xx_rate_alarm_averages_5xxerror_over_the_stage():
    (alarm,) = single_metric_alarms("AWS/ApiGateway", "5XXError").values()
    assert alarm["Statistic"] == "Average"  # 5XXError is 0 or 1 a request: its average is the rate
    # The SAM-generated REST API takes the stack's name (its OpenAPI title).
    # The stage's name from its parameter: a Ref to the stage would be a dependency cycle through the canary.
    assert dimensions(alarm) == {"ApiName": {"Ref": "AWS::StackName"}, "Stage": {"Ref": "StageName"}}
    assert alarm["Threshold"] == {"Ref": "Api5xxRateThreshold"}
    parameter = PARAMETERS["Api5xxRateThreshold"]
    assert 0 < parameter["Default"] < 1 and parameter["MaxValue"] == 1


def test_every_functions_throttles_reach_an_alarm():
    watched = {}
    for name, alarm in ALARMS.items():
        properties = alarm["Properties"]
        if properties.get("MetricName") == "Throttles":
            watched[dimensions(properties)["FunctionName"]["Ref"]] = name
        for query in properties.get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric", {})
            if (metric.get("Namespace"), metric.get("MetricName")) == ("AWS/Lambda", "Throttles"):
                (dimension,) = metric["Dimensions"]
                watched[dimension["Value"]["Ref"]] = name
                # A metric-math alarm alarms on its expression, which must include every function.
                (expression,) = [q for q in properties["Metrics"] if q.get("ReturnData")]
                assert query["Id"] in re.findall(r"\w+", expression["Expression"])
                assert query["ReturnData"] is False
    assert sorted(watched) == sorted(FUNCTIONS)


def emitted_metrics() -> set[str]:
    """Names the functions pass to metrics.add_metric(name=...) as literals (conditional ones too)."""
    names = set()
    for path in (REPO_ROOT / "functions").glob("*/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_metric":
                for keyword in node.keywords:
                    if keyword.arg == "name":
                        names |= {c.value for c in ast.walk(keyword.value) if isinstance(c, ast.Constant)}
    return names


@pytest.mark.parametrize(
    "metric, emitted_by",
    [("RetrainJobsFailed", "job_state"), ("ClaimsFreedByReconciler", "reconciler")],
)
def test_failed_and_stuck_retraining_jobs_alarm_on_the_metrics_the_functions_emit(metric, emitted_by):
    (alarm,) = single_metric_alarms(GLOBAL_VARIABLES["POWERTOOLS_METRICS_NAMESPACE"], metric).values()
    # Powertools adds the service dimension to every metric.
    assert dimensions(alarm) == {"service": GLOBAL_VARIABLES["POWERTOOLS_SERVICE_NAME"]}
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == ("Sum", "GreaterThanThreshold", 0)
    assert metric in emitted_metrics()
    assert f'name="{metric}"' in (REPO_ROOT / "functions" / emitted_by / "app.py").read_text()


def test_the_upload_rate_alarm_counts_the_upload_queues_notifications_against_its_parameter():
    (alarm,) = single_metric_alarms("AWS/SQS", "NumberOfMessagesSent").values()
    # The queue the uploads bucket notifies: one message an uploaded object.
    (notification,) = RESOURCES["UploadsBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    queue = notification["Queue"]["Fn::GetAtt"][0]
    assert dimensions(alarm) == {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}}
    assert (alarm["Statistic"], alarm["ComparisonOperator"]) == ("Sum", "GreaterThanThreshold")
    assert alarm["Threshold"] == {"Ref": "UploadRateAlarmThreshold"}
    assert PARAMETERS["UploadRateAlarmThreshold"]["Type"] == "Number"


# --- optional WAF -------------------------------------------------------------------------------


WAF_TYPES = ("AWS::WAFv2::WebACL", "AWS::WAFv2::WebACLAssociation")


def test_waf_is_off_by_default_and_every_waf_resource_exists_only_under_its_condition():
    parameter = PARAMETERS["EnableWaf"]
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == ("false", ["false", "true"])
    assert CONDITIONS["WafEnabled"] == {"Fn::Equals": [{"Ref": "EnableWaf"}, "true"]}
    waf = {name: r for name, r in RESOURCES.items() if r["Type"].startswith("AWS::WAF")}
    assert sorted(r["Type"] for r in waf.values()) == sorted(WAF_TYPES)
    assert {r.get("Condition") for r in waf.values()} == {"WafEnabled"}


def test_the_web_acl_rate_limits_each_ip_by_the_parameter_and_runs_the_common_rule_set():
    (acl,) = resources_of_type("AWS::WAFv2::WebACL").values()
    properties = acl["Properties"]
    assert properties["Scope"] == "REGIONAL"
    rules = {rule["Name"]: rule for rule in properties["Rules"]}
    (rate,) = [r["Statement"]["RateBasedStatement"] for r in rules.values() if "RateBasedStatement" in r["Statement"]]
    assert rate["Limit"] == {"Ref": "WafRateLimit"} and rate["AggregateKeyType"] == "IP"
    assert rate.get("EvaluationWindowSec", 300) == 300  # per 5 minutes, as the parameter says
    assert PARAMETERS["WafRateLimit"]["Default"] == 1000
    managed = {
        r["Statement"]["ManagedRuleGroupStatement"]["Name"]: r
        for r in rules.values()
        if "ManagedRuleGroupStatement" in r["Statement"]
    }
    assert "AWSManagedRulesCommonRuleSet" in managed
    assert len({r["Priority"] for r in rules.values()}) == len(rules)


def test_the_web_acl_is_associated_with_the_api_stage():
    (association,) = resources_of_type("AWS::WAFv2::WebACLAssociation").values()
    (acl,) = resources_of_type("AWS::WAFv2::WebACL")
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl, "Arn"]}
    assert association["Properties"]["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${MedClassifierApi}"
        "/stages/${MedClassifierApi.Stage}"
    }


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # a job that completed
@pytest.mark.parametrize("state, failed", [("Failed", True), ("Stopped", True), ("Completed", False)])
def test_job_state_emits_retrain_jobs_failed_when_a_job_ends_failed_or_stopped(monkeypatch, capsys, state, failed):
    from med_classifier.domain.jobs import JobRecord
    from tests.helpers.models import LambdaContext, load_function_module

    for variable in ("POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_SERVICE_NAME"):
        monkeypatch.setenv(variable, GLOBAL_VARIABLES[variable])
    module = load_function_module("job_state")

    class Recorded:  # the retraining service, as far as the handler uses it
        def on_state_change(self, change):
            return JobRecord(change.job_id, "chest-ct", trigger="uploads", backend="sagemaker", state=state)

    monkeypatch.setattr(module, "_service", Recorded)
    event = json.loads((REPO_ROOT / "events" / "eventbridge-sagemaker-job-state-change.json").read_text())
    module.lambda_handler(event, LambdaContext("JobStateFunction", 256))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    emitted = [
        (line["_aws"]["CloudWatchMetrics"][0]["Namespace"], line["service"], line["RetrainJobsFailed"])
        for line in lines
        if "RetrainJobsFailed" in line
    ]
    expected = (GLOBAL_VARIABLES["POWERTOOLS_METRICS_NAMESPACE"], GLOBAL_VARIABLES["POWERTOOLS_SERVICE_NAME"], [1.0])
    assert emitted == ([expected] if failed else [])


# --- Releases: SnapStart and canary deployments (README, "Releases: SnapStart and canary deployments")
API_FUNCTIONS = ("PredictFunction", "ImagePredictFunction", "RetrainingApiFunction")
HOOKED = ("PredictFunction", "ImagePredictFunction")  # the functions that serve models, whose golden examples exist


@pytest.mark.parametrize("name", API_FUNCTIONS)
def test_the_api_functions_publish_snapstart_versions_and_release_them_by_canary(name):
    properties = FUNCTIONS[name]["Properties"]
    assert properties["AutoPublishAlias"] == "live"
    assert properties["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    preference = properties["DeploymentPreference"]
    assert preference["Type"] == {"Ref": "DeploymentType"}
    assert preference["Alarms"] == [{"Ref": f"{name}CanaryErrorsAlarm"}, {"Ref": "Api5xxRateAlarm"}]
    hooks = {"PreTraffic": {"Ref": "PreTrafficHookFunction"}} if name in HOOKED else None
    assert preference.get("Hooks") == hooks


def test_only_the_api_functions_take_snapshots_and_aliases():
    released = {name for name, f in FUNCTIONS.items() if "SnapStart" in f["Properties"]}
    aliased = {name for name, f in FUNCTIONS.items() if "AutoPublishAlias" in f["Properties"]}
    assert released == aliased == set(API_FUNCTIONS)


@pytest.mark.parametrize("name", API_FUNCTIONS)
def test_snapstart_functions_stay_within_what_snapstart_supports(name):
    # SnapStart excludes provisioned concurrency, EFS, ephemeral storage over 512 MB and container images.
    properties = FUNCTIONS[name]["Properties"]
    assert "ProvisionedConcurrencyConfig" not in properties
    assert "FileSystemConfigs" not in properties
    assert properties.get("EphemeralStorage", {"Size": 512})["Size"] <= 512
    assert properties.get("PackageType", "Zip") == "Zip"
    assert TEMPLATE["Globals"]["Function"]["Runtime"] == "python3.12"  # SnapStart's Python runtimes: 3.12 and later


def test_the_default_release_is_ten_percent_for_five_minutes():
    assert PARAMETERS["DeploymentType"]["Default"] == "Canary10Percent5Minutes"
    assert "AllAtOnce" in PARAMETERS["DeploymentType"]["AllowedValues"]


@pytest.mark.parametrize("name", API_FUNCTIONS)
def test_each_canary_alarm_counts_the_errors_through_the_alias_clients_call(name):
    properties = ALARMS[f"{name}CanaryErrorsAlarm"]["Properties"]
    assert (properties["Namespace"], properties["MetricName"], properties["Statistic"]) == (
        "AWS/Lambda",
        "Errors",
        "Sum",
    )
    assert properties["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": name}},
        {"Name": "Resource", "Value": {"Fn::Sub": "${" + name + "}:live"}},
    ]
    assert (properties["Threshold"], properties["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert properties["Period"] == 60 and properties["AlarmActions"] == [TOPIC]


def test_the_hook_may_be_invoked_by_codedeploy_and_checks_the_versions_this_deployment_publishes():
    properties = FUNCTIONS["PreTrafficHookFunction"]["Properties"]
    # SAM's CodeDeploy role (AWSCodeDeployRoleForLambda) may invoke functions named CodeDeployHook_* only.
    assert properties["FunctionName"] == {"Fn::Sub": "CodeDeployHook_${AWS::StackName}-pre-traffic"}
    variables = properties["Environment"]["Variables"]
    assert variables["NEW_PREDICT_VERSION"] == {"Ref": "PredictFunction.Version"}
    assert variables["NEW_IMAGE_PREDICT_VERSION"] == {"Ref": "ImagePredictFunction.Version"}
    assert variables["LAMBDA_ENDPOINT_URL"] == ""
    assert not {"AutoPublishAlias", "DeploymentPreference", "SnapStart", "Events"} & set(properties)
