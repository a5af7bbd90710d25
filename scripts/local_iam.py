"""Each function with its own role's permissions, locally: moto with IAM enforced.

moto in server mode authorises every request against the caller's IAM identity once
`INITIAL_NO_AUTH_ACTION_COUNT` requests have been made (here: switched on after provisioning,
through /moto-api/reset-auth). This module

* starts that server (``python -m scripts.local_iam -H host -p port``: moto, plus
  scripts/local_runner/moto_service.py's job-status route, plus the resource checks below),
* creates each role of the SAM-transformed template (samtranslator, offline) with its inline
  and this template's managed policies, Refs, GetAtts, Subs and Ifs resolved to the local
  names and ARNs (scripts/local_resources.py), and assumes it (STS AssumeRole), and
* gives each function's worker the assumed role's credentials
  (``make run RUN_ARGS=--least-privilege``; tests/integration/test_least_privilege.py).

The access key "testing" that every local tool uses is an administrator in that server, so the
runner, its event sources, the bucket mirror and the tests keep working once IAM is enforced.

What moto 5.2 checks (moto/core/authorization.py, moto/iam/access_control.py):

* Actions: always, for every service, by their API name (`dynamodb:TransactWriteItems`,
  `sagemaker:CreateTrainingJob`, `s3:PutObject`...); explicit Deny wins.
* Resources: S3 passes the bucket or object ARN (`arn:aws:s3:::bucket/key`), SQS, IAM and STS
  theirs. Every other service passes "*", which a scoped statement never matches, so any call
  to DynamoDB or SageMaker would be denied. The server started here adds what IAM does for the
  two: DynamoDB's table ARN (`table/<name>/index/<index>` for an index's Query or Scan), and a
  transaction authorised item by item as PutItem, UpdateItem, DeleteItem, ConditionCheckItem or
  GetItem on each item's table (IAM has no TransactWriteItems action); SageMaker's training-job
  ARN, and `iam:PassRole` on the RoleArn that CreateTrainingJob passes (moto checks none).
* Conditions: never. With no request context passed, every condition of an identity policy
  counts as met (TrustCondition.verify_condition of no values is True): the training role's
  `s3:prefix` list limit and RetrainLaunchPolicy's `iam:PassedToService` are not enforced here;
  tests/unit/test_template.py asserts those statements exactly instead.
* Presigned POSTs: moto reads an Authorization header, which a form has not (a 500 once enforced),
  and would check the bucket; the server here checks PutObject on the form's key as its signer
  (x-amz-credential, x-amz-security-token), as S3 does. Neither checks the policy's signature.
* CopyObject is authorised as PutObject on the destination only (AWS also checks GetObject on
  the source); S3 answers 403 for a missing key whatever s3:ListBucket allows (AWS: 404 with it);
  bucket policies, permission boundaries and session policies are not evaluated.

Not created locally: the AWS managed policies SAM attaches (AWSLambdaBasicExecutionRole's log writes,
which the local workers do not make; AWSLambdaSQSQueueExecutionRole's queue reads, which the event
source mapping makes on AWS and the runner makes here as the administrator). Roles trust this account
(so they can be assumed here) instead of their service.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from scripts.local_resources import ACCOUNT, REGION, load_template, physical_names

NO_VALUE = object()
STACK_NAME = "med-classifier-local"
ADMIN_USER = "local-admin"
# The credentials every local tool already uses (scripts/local_stack.py, the runner's event sources and
# mirror, tests) belong to this administrator in the server started here, so they keep working once IAM
# is enforced; only the functions and the training jobs get roles of their own.
LOCAL_ADMIN = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
ALLOW_EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK_NAME,
    "AWS::URLSuffix": "amazonaws.com",
}


# --- the template, translated and resolved to local names -------------------------------------


def translate(template: dict) -> dict:
    """The CloudFormation that the SAM transform makes of the template, offline."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam_template = copy.deepcopy(template)
    for resource in sam_template["Resources"].values():
        properties = resource.get("Properties", {})
        for uri_key in ("CodeUri", "ContentUri"):
            uri = properties.get(uri_key)
            if isinstance(uri, str) and not uri.startswith("s3://"):  # local paths become S3 URIs on package
                properties[uri_key] = "s3://placeholder-bucket/placeholder-key"
    session = boto3.session.Session(region_name=REGION)
    translator = Translator(managed_policy_map=None, sam_parser=Parser(), plugins=[], boto_session=session)
    return translator.translate(sam_template, parameter_values={}, get_managed_policy_map=lambda: {})


@dataclass
class Resolver:
    """Resolves CloudFormation intrinsics against parameter values and local physical names."""

    template: dict  # CloudFormation (translated)
    parameters: dict[str, str]
    names: dict[str, str]  # logical id -> physical name
    pseudo: dict[str, str] = field(default_factory=lambda: dict(PSEUDO_PARAMETERS))  # AWS::Region...

    def condition(self, name: str) -> bool:
        return bool(self._condition(self.template.get("Conditions", {})[name]))

    def _condition(self, value):
        if isinstance(value, dict) and len(value) == 1:
            [(key, argument)] = value.items()
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._condition(argument[0])
            if key == "Fn::And":
                return all(self._condition(v) for v in argument)
            if key == "Fn::Or":
                return any(self._condition(v) for v in argument)
            if key == "Condition":
                return self.condition(argument)
        return self.resolve(value)

    def active(self, resource: dict) -> bool:
        return "Condition" not in resource or self.condition(resource["Condition"])

    def attribute(self, logical_id: str, attribute: str) -> str:
        resource_type = self.template["Resources"][logical_id]["Type"]
        name = self.names[logical_id]
        if attribute == "Arn":
            return {
                "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
                "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
                "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
                "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
                "AWS::ECR::Repository": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}",
                "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
                "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}",
                "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            }[resource_type]
        if (resource_type, attribute) == ("AWS::ECR::Repository", "RepositoryUri"):
            return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}"
        if (resource_type, attribute) == ("AWS::SQS::Queue", "QueueName"):
            return name
        raise KeyError(f"{logical_id}.{attribute} has no local value")

    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.template.get("Parameters", {}):
            return str(self.template["Parameters"][name].get("Default", ""))
        if self.template["Resources"][name]["Type"] == "AWS::IAM::ManagedPolicy":
            return f"arn:aws:iam::{ACCOUNT}:policy/{self.names[name]}"
        return self.names[name]

    def _sub(self, text: str, variables: dict) -> str:
        def value(match: re.Match) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                return str(self.resolve(variables[expression]))
            if "." in expression and not expression.startswith("AWS::"):
                return self.attribute(*expression.split(".", 1))
            return str(self.ref(expression))

        return re.sub(r"\$\{([^}]+)\}", value, text)

    def resolve(self, value):
        if isinstance(value, dict) and len(value) == 1:
            [(key, argument)] = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.attribute(logical_id, attribute)
            if key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                return self._sub(text, variables)
            if key == "Fn::If":
                condition, if_true, if_false = argument
                return self.resolve(if_true if self.condition(condition) else if_false)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(v) for v in self.resolve(items))
        if isinstance(value, dict):
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        return value


@dataclass
class RolePlan:
    """One role of the template as it is created locally."""

    logical_id: str
    name: str
    inline: dict[str, dict] = field(default_factory=dict)  # policy name -> document
    managed: list[str] = field(default_factory=list)  # this template's managed policies (logical ids)
    aws_managed: list[str] = field(default_factory=list)  # AWS managed policy ARNs: not created locally


@dataclass
class IamPlan:
    roles: dict[str, RolePlan]  # logical id -> plan
    managed_policies: dict[str, dict]  # logical id -> document
    function_roles: dict[str, str]  # function logical id -> role logical id
    resolver: Resolver


def local_role_name(logical_id: str, env: dict[str, str]) -> str:
    if logical_id == "TrainingJobRole" and env.get("TRAINING_ROLE_ARN"):
        return env["TRAINING_ROLE_ARN"].rsplit("/", 1)[-1]  # what the functions pass to SageMaker
    return f"{logical_id}-local"


def plan(template_path: Path, env: dict[str, str], parameters: dict[str, str] | None = None) -> IamPlan:
    """The template's roles and managed policies with local names and ARNs. `env` is the local
    env-vars file's values (events/env.json), `parameters` overrides template parameters."""
    sam_template = load_template(template_path)
    cfn = translate(sam_template)
    names = physical_names(sam_template, env)
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            names[logical_id] = local_role_name(logical_id, env)
        elif logical_id not in names:
            names[logical_id] = f"{logical_id}-local"
    resolver = Resolver(cfn, {"RetrainBackend": env.get("RETRAIN_BACKEND", "sagemaker"), **(parameters or {})}, names)
    resources = {k: r for k, r in cfn["Resources"].items() if resolver.active(r)}
    managed_policies = {
        logical_id: resolver.resolve(r["Properties"]["PolicyDocument"])
        for logical_id, r in resources.items()
        if r["Type"] == "AWS::IAM::ManagedPolicy"
    }
    roles = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        properties = resource["Properties"]
        role = RolePlan(logical_id, names[logical_id])
        for policy in properties.get("Policies", []):
            # SAM writes its own (e.g. EventInvokeConfig's destination) without Version, which moto
            # refuses and IAM reads as 2008-10-17; neither version changes what these statements grant.
            document = {"Version": "2012-10-17", **resolver.resolve(policy["PolicyDocument"])}
            role.inline[policy["PolicyName"]] = document
        for arn in properties.get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and "Ref" in arn:
                role.managed.append(arn["Ref"])
            else:
                role.aws_managed.append(resolver.resolve(arn))
        roles[logical_id] = role
    function_roles = {
        logical_id: r["Properties"]["Role"]["Fn::GetAtt"][0]
        for logical_id, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    return IamPlan(roles, managed_policies, function_roles, resolver)


# --- creating the roles in moto and assuming them --------------------------------------------

ANY_PRINCIPAL_OF_THIS_ACCOUNT = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
)


@dataclass
class LocalIdentities:
    credentials: dict[str, dict[str, str]]  # role logical id -> AWS_* environment variables
    function_roles: dict[str, str]  # function logical id -> role logical id
    role_arns: dict[str, str]
    admin: dict[str, str] = field(default_factory=lambda: dict(LOCAL_ADMIN))  # setup and inspection only

    def of_function(self, function: str) -> dict[str, str]:
        return self.credentials[self.function_roles[function]]

    def functions(self) -> dict[str, dict[str, str]]:
        """Function logical id -> its role's credentials (scripts.local_runner's function_credentials)."""
        return {function: self.of_function(function) for function in self.function_roles}


def _environment(credentials: dict) -> dict[str, str]:
    """AWS_* variables of these credentials. Both token names: botocore reads the legacy
    AWS_SECURITY_TOKEN first, so one left over from elsewhere would win over AWS_SESSION_TOKEN."""
    token = credentials.get("SessionToken", "")
    return {
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": token,
        "AWS_SECURITY_TOKEN": token,
    }


def create_identities(session_client, iam_plan: IamPlan) -> LocalIdentities:
    """Before enforcement: `session_client(service)` is a boto3 client for moto. Creates the managed
    policies and the roles (trusting this account, so they can be assumed here; on AWS each trusts
    its service) and assumes every role."""
    iam, sts = session_client("iam"), session_client("sts")
    policy_arns = {}
    for logical_id, document in iam_plan.managed_policies.items():
        name = iam_plan.resolver.names[logical_id]
        policy_arns[logical_id] = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"][
            "Arn"
        ]
    credentials, role_arns = {}, {}
    for logical_id, role in iam_plan.roles.items():
        arn = iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=ANY_PRINCIPAL_OF_THIS_ACCOUNT)["Role"]["Arn"]
        for policy_name, document in role.inline.items():
            iam.put_role_policy(RoleName=role.name, PolicyName=policy_name, PolicyDocument=json.dumps(document))
        for managed in role.managed:
            iam.attach_role_policy(RoleName=role.name, PolicyArn=policy_arns[managed])
        assumed = sts.assume_role(RoleArn=arn, RoleSessionName=logical_id[:64], DurationSeconds=43200)
        credentials[logical_id], role_arns[logical_id] = _environment(assumed["Credentials"]), arn
    return LocalIdentities(credentials, dict(iam_plan.function_roles), role_arns)


def enforce(moto_url: str) -> None:
    """From the next request on, moto authorises every request against its caller's identity."""
    request = urllib.request.Request(  # not form-encoded: Flask would consume the body as a form
        f"{moto_url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def client(service: str, moto_url: str, credentials: dict[str, str], **options):
    import boto3

    return boto3.client(
        service,
        **options,
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials.get("AWS_SESSION_TOKEN") or None,
    )


# --- the server: moto with the resource checks IAM makes for DynamoDB and SageMaker ------------

_TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _request_as(action: str):
    """moto's IAMRequest for another action than the request's own (`service:Action`)."""
    from moto.iam.access_control import IAMRequest

    class ActionRequest(IAMRequest):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self._action = action

    return ActionRequest


def _form_post_request(credential: str, token: str | None):
    """moto's S3IAMRequest for a presigned POST: its signer is the form's x-amz-credential (and
    x-amz-security-token), not an Authorization header, which a browser's form has none of."""
    from moto.iam.access_control import S3IAMRequest

    class FormPostRequest(S3IAMRequest):
        def __init__(self, **kwargs):
            headers = {k: v for k, v in dict(kwargs["headers"]).items() if k.lower() != "x-amz-security-token"}
            headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature=-"
            if token:
                headers["X-Amz-Security-Token"] = token
            super().__init__(**{**kwargs, "headers": headers})

        def check_signature(self) -> None:  # the policy's signature: moto checks none of a form's fields
            pass

    return FormPostRequest


def _authorise_presigned_posts_like_s3() -> None:
    """S3 authorises a presigned POST as its signer's PutObject on the form's key. moto 5.2 reads an
    Authorization header a form has not (a 500 once IAM is enforced) and would check the bucket's ARN."""
    from moto.s3.responses import S3Response

    authorize = S3Response._authenticate_and_authorize_s3_action

    def authorize_form_posts(self, bucket_name: str | None = None, key_name: str | None = None) -> None:
        fields = {name.lower(): values[0] for name, values in (self.querystring or {}).items() if values}
        # Signature V4 names its signer in x-amz-credential, V2 in AWSAccessKeyId.
        credential = fields.get("x-amz-credential") or (
            f"{fields['awsaccesskeyid']}/00000000/{self.region}/s3/aws4_request" if "awsaccesskeyid" in fields else None
        )
        is_form = self.method == "POST" and "Authorization" not in self.headers and credential
        if not (is_form and self.data.get("Action") == "PutObject" and "key" in fields):
            return authorize(self, bucket_name=bucket_name, key_name=key_name)
        request = _form_post_request(credential, fields.get("x-amz-security-token"))
        self._authenticate_and_authorize_action(request, f"arn:aws:s3:::{bucket_name}/{fields['key']}")

    S3Response._authenticate_and_authorize_s3_action = authorize_form_posts


def _check_resources_like_iam() -> None:
    from moto.dynamodb.responses import DynamoHandler
    from moto.sagemaker.responses import SageMakerResponse

    def table_arn(handler, table: str, index: str | None = None) -> str:
        arn = f"arn:aws:dynamodb:{handler.region}:{handler.current_account}:table/{table}"
        return f"{arn}/index/{index}" if index else arn

    def dynamodb_resource(self) -> str:
        body = getattr(self, "body", None) or {}
        if not isinstance(body, dict) or "TableName" not in body:
            return "*"
        index = body.get("IndexName") if self._get_action() in ("Query", "Scan") else None
        return table_arn(self, body["TableName"], index)

    authorize = DynamoHandler._authenticate_and_authorize_normal_action

    def dynamodb_authorize(self, resource: str = "*") -> None:
        if self._get_action() not in ("TransactWriteItems", "TransactGetItems"):
            return authorize(self, resource)
        for item in (getattr(self, "body", None) or {}).get("TransactItems", []):
            [(kind, spec)] = item.items()
            action = _request_as(f"dynamodb:{_TRANSACT_ITEM_ACTIONS[kind]}")
            self._authenticate_and_authorize_action(action, table_arn(self, spec["TableName"]))

    def sagemaker_resource(self) -> str:
        name = self._get_param("TrainingJobName")
        account, region = self.current_account, self.region
        return f"arn:aws:sagemaker:{region}:{account}:training-job/{name}" if name else "*"

    sagemaker_authorize = SageMakerResponse._authenticate_and_authorize_normal_action

    def sagemaker_pass_role(self, resource: str = "*") -> None:
        sagemaker_authorize(self, resource)
        if self._get_action() == "CreateTrainingJob":  # passing the job's role needs iam:PassRole on it
            self._authenticate_and_authorize_action(_request_as("iam:PassRole"), self._get_param("RoleArn"))

    _authorise_presigned_posts_like_s3()
    DynamoHandler._determine_resource = dynamodb_resource
    DynamoHandler._authenticate_and_authorize_normal_action = dynamodb_authorize
    SageMakerResponse._determine_resource = sagemaker_resource
    SageMakerResponse._authenticate_and_authorize_normal_action = sagemaker_pass_role


def moto_server(port: int, host: str = "127.0.0.1"):
    """scripts.local_stack.MotoServer running this module's server (IAM enforced after `enforce`)."""
    from scripts.local_stack import MotoServer

    server = MotoServer(port=port, host=host)
    server.module = "scripts.local_iam"
    return server


def _testing_is_the_local_administrator() -> None:
    from moto.iam.models import iam_backends

    backend = iam_backends[ACCOUNT]["aws"]
    backend.create_user(REGION, ADMIN_USER)
    backend.put_user_policy(ADMIN_USER, "everything", json.dumps(ALLOW_EVERYTHING))
    key = backend.create_access_key(ADMIN_USER)
    key.access_key_id, key.secret_access_key = LOCAL_ADMIN["AWS_ACCESS_KEY_ID"], LOCAL_ADMIN["AWS_SECRET_ACCESS_KEY"]


def main(argv: list[str]) -> None:
    from scripts.local_runner import moto_service

    _check_resources_like_iam()
    _testing_is_the_local_administrator()
    moto_service.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
