"""Creates the template's buckets, queues and tables in moto, as `sam deploy` would on AWS.

Read from template.yaml itself, so local and deployed resources cannot drift apart:
table keys and indexes, queue attributes and redrive policies, bucket notifications and
CORS rules (the web page POSTs uploads straight to the bucket).
Physical names come from the env-vars file (the function variable that `!Ref`s a
resource names it, e.g. MODELS_BUCKET for ModelsBucket); other resources get
`<logical-id>-local`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from samcli.yamlhelper import yaml_parse

from scripts.local_runner.api import yaml_safe_loader_preserved

ACCOUNT, REGION = "123456789012", "us-east-1"
TYPES = ("AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::DynamoDB::Table")


@dataclass
class LocalResources:
    names: dict[str, str] = field(default_factory=dict)  # logical id -> physical name
    queue_urls: dict[str, str] = field(default_factory=dict)  # logical id -> queue URL


def _kebab(logical_id: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", logical_id).lower()


def load_template(path: Path) -> dict:
    with yaml_safe_loader_preserved():
        return yaml_parse(Path(path).read_text())


def function_variables(template: dict) -> dict:
    """Every environment variable the template gives a function (Globals and each function's own)."""
    variables = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            variables.update(resource["Properties"].get("Environment", {}).get("Variables", {}))
    return variables


def physical_names(template: dict, env: dict[str, str]) -> dict[str, str]:
    named = {
        value["Ref"]: env[name]
        for name, value in function_variables(template).items()
        if isinstance(value, dict) and "Ref" in value and name in env
    }
    return {
        logical_id: named.get(logical_id, f"{_kebab(logical_id)}-local")
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] in TYPES
    }


def _arn(resource_type: str, name: str) -> str:
    if resource_type == "AWS::SQS::Queue":
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    if resource_type == "AWS::S3::Bucket":
        return f"arn:aws:s3:::{name}"
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def _resolve(value, template: dict, names: dict[str, str]):
    """Ref / GetAtt .Arn of this template's resources → local names and ARNs."""
    if isinstance(value, dict) and len(value) == 1:
        [(key, argument)] = value.items()
        if key == "Ref" and argument in names:
            return names[argument]
        if key == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            if attribute == "Arn" and logical_id in names:
                return _arn(template["Resources"][logical_id]["Type"], names[logical_id])
    if isinstance(value, dict):
        return {k: _resolve(v, template, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, template, names) for v in value]
    return value


# CloudFormation's CorsRule property names → S3's CORSRule names.
_CORS_RULE_NAMES = {
    "AllowedHeaders": "AllowedHeaders",
    "AllowedMethods": "AllowedMethods",
    "AllowedOrigins": "AllowedOrigins",
    "ExposedHeaders": "ExposeHeaders",
    "Id": "ID",
    "MaxAge": "MaxAgeSeconds",
}


def _cors_rules(cors: dict) -> list[dict]:
    return [{_CORS_RULE_NAMES[k]: v for k, v in rule.items() if k in _CORS_RULE_NAMES} for rule in cors["CorsRules"]]


def provision(session_client, template_path: Path, env: dict[str, str]) -> LocalResources:
    """`session_client(service)` returns a boto3 client for moto. Idempotent."""
    template = load_template(template_path)
    names = physical_names(template, env)
    by_type = {
        t: {lid: template["Resources"][lid] for lid in names if template["Resources"][lid]["Type"] == t} for t in TYPES
    }
    create_tables(session_client("dynamodb"), by_type["AWS::DynamoDB::Table"], names)
    queue_urls = create_queues(session_client("sqs"), by_type["AWS::SQS::Queue"], template, names)
    create_buckets(session_client("s3"), by_type["AWS::S3::Bucket"], template, names)
    return LocalResources(names=names, queue_urls=queue_urls)


def create_tables(dynamodb, tables: dict[str, dict], names: dict[str, str]) -> None:
    existing = set(dynamodb.list_tables()["TableNames"])
    for logical_id, resource in tables.items():
        if names[logical_id] in existing:
            continue
        props = resource["Properties"]
        indexes = (
            {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]} if "GlobalSecondaryIndexes" in props else {}
        )
        dynamodb.create_table(
            TableName=names[logical_id],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            **indexes,
        )


QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy", "DelaySeconds")


def create_queues(sqs, queues: dict[str, dict], template: dict, names: dict[str, str]) -> dict[str, str]:
    """Logical id → queue URL. Dead-letter queues first: a redrive policy names its target's ARN."""
    urls = {}
    for logical_id, resource in sorted(
        queues.items(), key=lambda item: "RedrivePolicy" in item[1].get("Properties", {})
    ):
        props = _resolve(resource.get("Properties", {}), template, names)
        attributes = {
            k: (json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in props.items() if k in QUEUE_ATTRIBUTES
        }
        urls[logical_id] = sqs.create_queue(QueueName=names[logical_id], Attributes=attributes)["QueueUrl"]
    return urls


def create_buckets(s3, buckets: dict[str, dict], template: dict, names: dict[str, str]) -> None:
    for logical_id, resource in buckets.items():
        bucket = names[logical_id]
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        cors = resource.get("Properties", {}).get("CorsConfiguration")
        if cors:
            s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": _cors_rules(cors)})
        notifications = _resolve(resource.get("Properties", {}).get("NotificationConfiguration"), template, names)
        if notifications:
            queues = [_queue_notification(q) for q in notifications.get("QueueConfigurations", [])]
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues}
            )


def _queue_notification(configuration: dict) -> dict:
    """A template QueueConfiguration (CloudFormation's shape) → the S3 API's shape."""
    rules = (
        {"Filter": {"Key": {"FilterRules": configuration["Filter"]["S3Key"]["Rules"]}}}
        if "Filter" in configuration
        else {}
    )
    return {"QueueArn": configuration["Queue"], "Events": [configuration["Event"]], **rules}
