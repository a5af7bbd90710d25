"""The created stack against the template: which logical ids exist, what each resource kept, the Outputs.

Expected values come from the translated template (conditions applied), its Refs and GetAtts resolved
independently of moto (scripts.local_iam.Resolver) against the physical ids the stack lists. Each
comparator reads the live resource through the service's own API (get_function_configuration,
describe_table, get_role_policy...) and records one Check per property it reads. CloudFormation hands
every scalar to the service as a string (a Number parameter's Ref is a string), so values compare as
strings: 60 and "60", True and "true" are the same.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from scripts.local_iam import Resolver
from scripts.local_stack import aws_client
from scripts.rehearse.gaps import IGNORED_PROPERTIES, SKIPPED_TYPES
from scripts.rehearse.prepare import routes
from scripts.rehearse.stack import LiveStack

MISSING = "<missing>"  # what a live resource shows for something the template has and it has not
_MARKER = re.compile(r"«(not created|no value): ([^»]+)»")


def not_created(logical_id: str) -> str:
    return f"«not created: {logical_id}»"


def no_value(what: str) -> str:
    return f"«no value: {what}»"


def canonical(value: Any) -> Any:
    """Scalars as CloudFormation passes them (strings), containers compared by content."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def policy_document(value: Any) -> Any:
    """A policy as IAM returns it: JSON, or (moto, for one CloudFormation gave as an object) Python's repr."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return ast.literal_eval(value)


def function_name(value: Any) -> Any:
    """A function's name from its name or ARN (an ESM or a permission may use either)."""
    return value.split(":function:", 1)[1] if isinstance(value, str) and ":function:" in value else value


@dataclass
class Check:
    logical_id: str
    resource_type: str
    prop: str  # a top-level property of the template's resource
    detail: str  # which part of it ("" for all of it): a variable, a route, a policy name
    expected: Any
    actual: Any

    def _markers(self, kind: str) -> list[str]:
        text = json.dumps(self.expected, default=str, ensure_ascii=False)
        return sorted({name for found, name in _MARKER.findall(text) if found == kind})

    @property
    def depends_on(self) -> list[str]:
        """Skipped resources the expected value references: the check is not made."""
        return self._markers("not created")

    @property
    def status(self) -> str:
        if self.depends_on:
            return "not checked"
        if self._markers("no value") or canonical(self.expected) != canonical(self.actual):
            return "FAIL"
        return "pass"

    @property
    def name(self) -> str:
        return f"{self.logical_id}.{self.prop}" + (f" [{self.detail}]" if self.detail else "")

    def message(self) -> str:
        return f"{self.name}: template {_short(self.expected)}, moto {_short(self.actual)}"


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, default=str, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Resource:
    """One created resource of the template: its expected (resolved) properties and the checks made."""

    logical_id: str
    type: str
    props: dict
    physical: str
    checks: list[Check] = field(default_factory=list)

    def check(self, prop: str, expected: Any, actual: Any, detail: str = "") -> None:
        self.checks.append(Check(self.logical_id, self.type, prop, detail, expected, actual))

    def same(self, live: dict, *names: str, renamed: dict[str, str] | None = None) -> None:
        """Each of `names` the template sets, against the live field of that name (or `renamed[name]`)."""
        for name in names:
            if name in self.props:
                self.check(name, self.props[name], live.get((renamed or {}).get(name, name), MISSING))

    def each(self, prop: str, expected: dict, actual: dict) -> None:
        """A check per key of two mappings (variables, policies by name): missing and extra keys fail."""
        for key in list(expected) + [k for k in actual if k not in expected]:
            self.check(prop, expected.get(key, MISSING), actual.get(key, MISSING), detail=key)


class Live:
    """boto3 clients for the rehearsal's moto."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str):
        if service not in self._clients:
            self._clients[service] = aws_client(service, self.endpoint)
        return self._clients[service]

    def object_size(self, bucket: str, key: str) -> int | str:
        try:
            return self("s3").head_object(Bucket=bucket, Key=key)["ContentLength"]
        except self("s3").exceptions.ClientError:
            return MISSING


# --- comparators, one per resource type moto creates -----------------------------------------------

Comparator = Callable[[Live, Resource], None]
COMPARATORS: dict[str, Comparator] = {}


def comparator(resource_type: str) -> Callable[[Comparator], Comparator]:
    def register(function: Comparator) -> Comparator:
        COMPARATORS[resource_type] = function
        return function

    return register


@comparator("AWS::Lambda::Function")
def _function(live: Live, r: Resource) -> None:
    config = live("lambda").get_function_configuration(FunctionName=r.physical)
    r.same(config, "Runtime", "Handler", "MemorySize", "Timeout", "Description", "Role", "FunctionName")
    if "Environment" in r.props:
        r.each(
            "Environment",
            r.props["Environment"].get("Variables", {}),
            config.get("Environment", {}).get("Variables", {}),
        )
    if "ReservedConcurrentExecutions" in r.props:
        concurrency = live("lambda").get_function_concurrency(FunctionName=r.physical)
        r.check(
            "ReservedConcurrentExecutions",
            r.props["ReservedConcurrentExecutions"],
            concurrency.get("ReservedConcurrentExecutions", MISSING),
        )
    code = r.props.get("Code", {})
    if "S3Key" in code:  # the object `sam package` uploaded is the function's code
        location = live("lambda").get_function(FunctionName=r.physical)["Code"].get("Location", "")
        r.check(
            "Code",
            {"S3Key": code["S3Key"], "size": live.object_size(code["S3Bucket"], code["S3Key"])},
            {"S3Key": location.rsplit("/", 1)[-1], "size": config.get("CodeSize", MISSING)},
            detail="the packaged object",
        )


@comparator("AWS::Lambda::Version")
def _version(live: Live, r: Resource) -> None:
    """moto lists no physical id for a version: the function's published versions are read instead."""
    lambda_ = live("lambda")
    try:
        versions = lambda_.list_versions_by_function(FunctionName=r.props["FunctionName"])["Versions"]
    except lambda_.exceptions.ResourceNotFoundException:
        versions = []
    published = [function_name(v["FunctionArn"]).rsplit(":", 1)[0] for v in versions if v["Version"] != "$LATEST"]
    latest = published[-1] if published else MISSING
    r.check("FunctionName", function_name(r.props["FunctionName"]), latest, detail="a published version")


@comparator("AWS::Lambda::Permission")
def _permission(live: Live, r: Resource) -> None:
    lambda_ = live("lambda")
    try:
        statements = json.loads(lambda_.get_policy(FunctionName=r.props["FunctionName"])["Policy"])["Statement"]
    except lambda_.exceptions.ResourceNotFoundException:
        statements = []

    def source_arn(statement: dict) -> Any:
        return statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn", MISSING)

    def principal(statement: dict) -> Any:
        value = statement.get("Principal", MISSING)
        return value.get("Service", value.get("AWS", value)) if isinstance(value, dict) else value

    matching = [
        s
        for s in statements
        if principal(s) == r.props.get("Principal") and source_arn(s) == r.props.get("SourceArn", MISSING)
    ]
    statement = matching[0] if matching else {}
    r.check("Principal", r.props["Principal"], principal(statement) if statement else MISSING)
    r.same(statement, "Action")
    if "SourceArn" in r.props:
        r.check("SourceArn", r.props["SourceArn"], source_arn(statement) if statement else MISSING)
    r.check(
        "FunctionName",
        function_name(r.props["FunctionName"]),
        function_name(statement.get("Resource", MISSING)),
    )


@comparator("AWS::Lambda::LayerVersion")
def _layer_version(live: Live, r: Resource) -> None:
    """moto lists no physical id for a layer version: found by its generated name, <stack>-<logical id>-<suffix>
    (version 1, a new layer per stack)."""
    lambda_ = live("lambda")
    layers = [layer["LayerName"] for layer in lambda_.list_layers()["Layers"]]
    names = [name for name in layers if f"-{r.logical_id}-" in name]
    layer = lambda_.get_layer_version(LayerName=names[0], VersionNumber=1) if names else {}
    r.same(layer, "Description", "CompatibleRuntimes", "LicenseInfo")
    content = r.props.get("Content", {})
    if "S3Key" in content:
        r.check(
            "Content",
            live.object_size(content["S3Bucket"], content["S3Key"]),
            layer.get("Content", {}).get("CodeSize", MISSING),
            detail="size of the packaged object",
        )


@comparator("AWS::Lambda::EventSourceMapping")
def _event_source_mapping(live: Live, r: Resource) -> None:
    mapping = live("lambda").get_event_source_mapping(UUID=r.physical)
    for name, expected in r.props.items():
        if name == "FunctionName":
            r.check(name, function_name(expected), function_name(mapping.get("FunctionArn", MISSING)))
        elif name == "Enabled":
            r.check(name, expected, mapping.get("State") == "Enabled")
        else:
            r.check(name, expected, mapping.get(name, MISSING))


@comparator("AWS::IAM::Role")
def _role(live: Live, r: Resource) -> None:
    iam = live("iam")
    role = iam.get_role(RoleName=r.physical)["Role"]
    r.same(role, "AssumeRolePolicyDocument", "Path", "Description", "MaxSessionDuration", "RoleName")
    if "Tags" in r.props:
        r.each("Tags", _tags(r.props["Tags"]), _tags(role.get("Tags", [])))
    if "Policies" in r.props:
        names = iam.list_role_policies(RoleName=r.physical)["PolicyNames"]
        actual = {
            name: policy_document(iam.get_role_policy(RoleName=r.physical, PolicyName=name)["PolicyDocument"])
            for name in names
        }
        r.each("Policies", {p["PolicyName"]: p["PolicyDocument"] for p in r.props["Policies"]}, actual)


def _tags(tags: Iterable[dict]) -> dict:
    return {tag["Key"]: tag["Value"] for tag in tags}


@comparator("AWS::IAM::ManagedPolicy")
def _managed_policy(live: Live, r: Resource) -> None:
    iam = live("iam")
    policy = iam.get_policy(PolicyArn=r.physical)["Policy"]
    r.same(policy, "Description", "Path", "ManagedPolicyName", renamed={"ManagedPolicyName": "PolicyName"})
    if "PolicyDocument" in r.props:
        version = iam.get_policy_version(PolicyArn=r.physical, VersionId=policy["DefaultVersionId"])
        r.check("PolicyDocument", r.props["PolicyDocument"], policy_document(version["PolicyVersion"]["Document"]))


@comparator("AWS::SQS::Queue")
def _queue(live: Live, r: Resource) -> None:
    """Every property but the name is a queue attribute of the same name."""
    attributes = live("sqs").get_queue_attributes(QueueUrl=r.physical, AttributeNames=["All"])["Attributes"]
    for name, expected in r.props.items():
        if name == "QueueName":
            r.check(name, expected, r.physical.rsplit("/", 1)[-1])
        elif name in ("RedrivePolicy", "RedriveAllowPolicy"):
            r.check(name, expected, json.loads(attributes[name]) if name in attributes else MISSING)
        elif name != "Tags":
            r.check(name, expected, attributes.get(name, MISSING))


def _indexes(indexes: Iterable[dict]) -> list[dict]:
    keys = ("IndexName", "KeySchema", "Projection")
    return sorted(({k: i[k] for k in keys if k in i} for i in indexes), key=lambda i: i["IndexName"])


@comparator("AWS::DynamoDB::Table")
def _table(live: Live, r: Resource) -> None:
    table = live("dynamodb").describe_table(TableName=r.physical)["Table"]
    r.same(table, "KeySchema")
    if "TableName" in r.props:
        r.check("TableName", r.props["TableName"], table["TableName"])
    if "AttributeDefinitions" in r.props:
        by_name = lambda items: sorted(items, key=lambda a: a["AttributeName"])  # noqa: E731
        r.check(
            "AttributeDefinitions", by_name(r.props["AttributeDefinitions"]), by_name(table["AttributeDefinitions"])
        )
    if "BillingMode" in r.props:
        r.check("BillingMode", r.props["BillingMode"], table.get("BillingModeSummary", {}).get("BillingMode", MISSING))
    for name in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if name in r.props:
            r.check(name, _indexes(r.props[name]), _indexes(table.get(name, [])))


@comparator("AWS::S3::Bucket")
def _bucket(live: Live, r: Resource) -> None:
    if "BucketName" in r.props:
        r.check("BucketName", r.props["BucketName"], r.physical)
    if "BucketEncryption" in r.props:
        s3 = live("s3")
        try:
            rules = s3.get_bucket_encryption(Bucket=r.physical)["ServerSideEncryptionConfiguration"]["Rules"]
        except s3.exceptions.ClientError:
            rules = []

        def rule(by_default: dict, bucket_key: bool) -> dict:
            keys = ("SSEAlgorithm", "KMSMasterKeyID")
            return {key: by_default.get(key) for key in keys} | {"BucketKeyEnabled": bucket_key}

        expected = r.props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        r.check(
            "BucketEncryption",
            [rule(e["ServerSideEncryptionByDefault"], e.get("BucketKeyEnabled", False)) for e in expected],
            [rule(a["ApplyServerSideEncryptionByDefault"], a.get("BucketKeyEnabled", False)) for a in rules],
        )


@comparator("AWS::Logs::LogGroup")
def _log_group(live: Live, r: Resource) -> None:
    groups = live("logs").describe_log_groups(logGroupNamePrefix=r.physical)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == r.physical), {})
    renamed = {"LogGroupName": "logGroupName", "RetentionInDays": "retentionInDays", "KmsKeyId": "kmsKeyId"}
    r.same(group, *renamed, renamed=renamed)


@comparator("AWS::SNS::Topic")
def _topic(live: Live, r: Resource) -> None:
    """Every property but the name is a topic attribute of the same name."""
    attributes = live("sns").get_topic_attributes(TopicArn=r.physical)["Attributes"]
    for name, expected in r.props.items():
        if name == "TopicName":
            r.check(name, expected, r.physical.rsplit(":", 1)[-1])
        elif name != "Tags":
            r.check(name, expected, attributes.get(name, MISSING))


@comparator("AWS::KMS::Key")
def _key(live: Live, r: Resource) -> None:
    kms = live("kms")
    if "KeyPolicy" in r.props:
        r.check(
            "KeyPolicy",
            r.props["KeyPolicy"],
            policy_document(kms.get_key_policy(KeyId=r.physical, PolicyName="default")["Policy"]),
        )
    if "EnableKeyRotation" in r.props:
        rotation = kms.get_key_rotation_status(KeyId=r.physical)["KeyRotationEnabled"]
        r.check("EnableKeyRotation", r.props["EnableKeyRotation"], rotation)


@comparator("AWS::ECR::Repository")
def _repository(live: Live, r: Resource) -> None:
    [repository] = live("ecr").describe_repositories(repositoryNames=[r.physical])["repositories"]
    renamed = {"RepositoryName": "repositoryName", "ImageTagMutability": "imageTagMutability"}
    r.same(repository, *renamed, renamed=renamed)


@comparator("AWS::Events::Rule")
def _rule(live: Live, r: Resource) -> None:
    events = live("events")
    rule = events.describe_rule(Name=r.physical)
    r.same(rule, "ScheduleExpression", "Description", "State", "RoleArn", "EventBusName")
    if "Name" in r.props:
        r.check("Name", r.props["Name"], rule["Name"])
    if "EventPattern" in r.props:
        r.check("EventPattern", r.props["EventPattern"], json.loads(rule.get("EventPattern") or "null"))
    if "Targets" in r.props:
        targets = events.list_targets_by_rule(Rule=r.physical)["Targets"]
        r.each("Targets", {t["Id"]: t for t in r.props["Targets"]}, {t["Id"]: t for t in targets})


@comparator("AWS::ApiGateway::RestApi")
def _rest_api(live: Live, r: Resource) -> None:
    apigateway = live("apigateway")
    api = apigateway.get_rest_api(restApiId=r.physical)
    r.same(api, "Name", "Description", renamed={"Name": "name", "Description": "description"})
    if "EndpointConfiguration" in r.props:
        r.check(
            "EndpointConfiguration",
            r.props["EndpointConfiguration"].get("Types"),
            api["endpointConfiguration"]["types"],
        )
    if "Body" in r.props:  # the routes: each path and method, its authorization and its integration
        items = apigateway.get_resources(restApiId=r.physical, embed=["methods"], limit=500)["items"]
        actual = {
            f"{method} {item['path']}": {
                "AuthorizationType": spec.get("authorizationType"),
                "ApiKeyRequired": spec.get("apiKeyRequired", False),
                "Integration": {
                    "Type": spec.get("methodIntegration", {}).get("type"),
                    "IntegrationHttpMethod": spec.get("methodIntegration", {}).get("httpMethod"),
                    "Uri": spec.get("methodIntegration", {}).get("uri"),
                },
            }
            for item in items
            for method, spec in item.get("resourceMethods", {}).items()
        }
        r.each("Body", {f"{method} {path}": route for (path, method), route in routes(r.props["Body"]).items()}, actual)


@comparator("AWS::ApiGateway::Deployment")
def _deployment(live: Live, r: Resource) -> None:
    apigateway = live("apigateway")
    api_id = r.props["RestApiId"]
    deployments = apigateway.get_deployments(restApiId=api_id)["items"]
    found = [d for d in deployments if d.get("description", "") == r.props.get("Description", "")]
    r.check("RestApiId", api_id, api_id if found else MISSING)
    r.same(found[0] if found else {}, "Description", renamed={"Description": "description"})
    if "StageName" in r.props:
        stages = apigateway.get_stages(restApiId=api_id)["item"]
        deployed = [s["stageName"] for s in stages if found and s.get("deploymentId") == found[0]["id"]]
        r.check("StageName", r.props["StageName"], deployed[0] if deployed else MISSING)


# --- the whole stack --------------------------------------------------------------------------------


@dataclass
class LiveResolver(Resolver):
    """Resolver (scripts.local_iam) with the stack's physical ids: Ref gives the physical id, GetAtt the
    ARN built from the name; a resource moto did not create, or a value it cannot build, gives a marker."""

    physical: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)

    def ref(self, name: str):
        if name in self.skipped:
            return not_created(name)
        if name in self.template["Resources"]:
            return self.physical.get(name) or no_value(name)
        return super().ref(name)

    def attribute(self, logical_id: str, attribute: str) -> str:
        if logical_id in self.skipped:
            return not_created(logical_id)
        try:
            return super().attribute(logical_id, attribute)
        except KeyError:
            return no_value(f"{logical_id}.{attribute}")


def _short_name(resource_type: str, physical: str) -> str:
    """The name in a physical id that is a URL or an ARN (queues, managed policies)."""
    if resource_type == "AWS::SQS::Queue" or resource_type == "AWS::IAM::ManagedPolicy":
        return physical.rsplit("/", 1)[-1]
    return physical


@dataclass
class Comparison:
    resources: dict[str, Resource]  # created (compared where a comparator reads the type)
    skipped: dict[str, str]  # logical id -> type, listed in SKIPPED_TYPES
    missing: dict[str, str]  # logical id -> type: not created, type not listed
    listed_but_created: dict[str, str]  # logical id -> type: created although its type is listed as skipped
    failed_status: dict[str, str]  # logical id -> status other than CREATE_COMPLETE
    unaccounted: dict[str, list[str]]  # logical id -> properties neither compared nor listed as ignored
    outputs: dict[str, Check]

    def checks(self) -> list[Check]:
        return [check for resource in self.resources.values() for check in resource.checks]

    def failures(self) -> list[str]:
        failures = [f"{lid} ({t}): not created, and SKIPPED_TYPES lacks its type" for lid, t in self.missing.items()]
        failures += [
            f"{lid} ({t}): created, yet SKIPPED_TYPES lists its type" for lid, t in self.listed_but_created.items()
        ]
        failures += [f"{lid}: {status}" for lid, status in self.failed_status.items()]
        failures += [check.message() for check in self.checks() if check.status == "FAIL"]
        failures += [
            f"{lid}.{prop}: neither compared nor in IGNORED_PROPERTIES"
            for lid, props in self.unaccounted.items()
            for prop in props
        ]
        failures += [
            f"{check.name}: did not resolve" if check.actual == MISSING else check.message()
            for check in self.outputs.values()
            if check.status == "FAIL"
        ]
        return failures


def compare(expected: dict, stack: LiveStack, live: Live) -> Comparison:
    """`expected`: the translated template with conditions applied (and stand-ins); `stack`: what moto made."""
    template_resources = expected["Resources"]
    listed = [lid for lid in template_resources if lid in stack.resources]
    skipped = {
        lid: r["Type"]
        for lid, r in template_resources.items()
        if lid not in stack.resources and r["Type"] in SKIPPED_TYPES
    }
    missing = {
        lid: r["Type"] for lid, r in template_resources.items() if lid not in stack.resources and lid not in skipped
    }
    listed_but_created = {
        lid: template_resources[lid]["Type"] for lid in listed if template_resources[lid]["Type"] in SKIPPED_TYPES
    }
    failed_status = {
        lid: stack.resources[lid]["ResourceStatus"]
        for lid in listed
        if stack.resources[lid]["ResourceStatus"] != "CREATE_COMPLETE"
    }
    physical = {lid: stack.resources[lid].get("PhysicalResourceId", "") for lid in listed}
    names = {lid: _short_name(template_resources[lid]["Type"], p) for lid, p in physical.items() if p}
    resolver = LiveResolver(expected, {}, names, physical=physical, skipped=set(skipped) | set(missing))
    resolver.pseudo["AWS::StackName"] = stack.name
    compared: dict[str, Resource] = {}
    unaccounted: dict[str, list[str]] = {}
    for lid in listed:
        resource_type = template_resources[lid]["Type"]
        props = resolver.resolve(template_resources[lid].get("Properties", {}))
        resource = Resource(lid, resource_type, props, physical[lid])
        if resource_type in COMPARATORS:
            try:
                COMPARATORS[resource_type](live, resource)
            except (ClientError, BotoCoreError, KeyError, ValueError) as error:  # reading it back failed
                resource.check("(read back)", "readable", f"{type(error).__name__}: {str(error)[:200]}")
                compared[lid] = resource
                continue  # that failure stands for all its properties
        compared[lid] = resource
        checked = {check.prop for check in resource.checks}
        ignored = set(IGNORED_PROPERTIES.get(resource_type, {}))
        left = [prop for prop in props if prop not in checked and prop not in ignored]
        if left:
            unaccounted[lid] = left
    outputs = {
        key: Check("Outputs", "", key, "", resolver.resolve(output["Value"]), stack.outputs.get(key, MISSING))
        for key, output in expected.get("Outputs", {}).items()
    }
    return Comparison(compared, skipped, missing, listed_but_created, failed_status, unaccounted, outputs)
