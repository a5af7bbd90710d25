"""What the rehearsal does to the translated template before moto gets it (pure functions).

CloudFormation itself needs none of this; moto 5.2 does:

* ``resolve_conditions``: moto keeps ``AWS::NoValue`` as null inside lists (IAM then refuses the policy
  as malformed), so every ``Condition``, ``Fn::If`` and ``AWS::NoValue`` is applied here, with the
  template's default parameter values (or the ones given).
* ``api_body_to_resources``: moto reads a REST API's ``Name`` and ignores its ``Body`` (the OpenAPI
  document SAM writes), so each path becomes an ``AWS::ApiGateway::Resource`` and each operation an
  ``AWS::ApiGateway::Method``, and the API gets the name CloudFormation would give it (the title).
* ``dependency_order``: moto creates resources in template order and does not wait for ``DependsOn``.
* ``lowercase_names``: moto names an unnamed ECR repository after its logical id, upper case included,
  which ECR refuses; CloudFormation's own names are lower case.
* ``stand_in_references``: moto gives no value to a Ref of a resource it cannot create (a Lambda alias) or
  of a Lambda version, and a resource that needs one fails; each such Ref gets a stand-in value instead.

scripts/rehearse/gaps.py lists these rewrites (REWRITES) with the rest of what the rehearsal does not prove.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable

from scripts.local_iam import NO_VALUE, Resolver

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


# --- references -------------------------------------------------------------------------------


def references(value, resource_ids: Iterable[str]) -> set[str]:
    """The logical ids of `resource_ids` that `value` names (Ref, Fn::GetAtt, Fn::Sub)."""
    ids, found = set(resource_ids), set()

    def walk(item):
        if isinstance(item, dict):
            for key, argument in item.items():
                if key == "Ref" and isinstance(argument, str):
                    found.add(argument)
                elif key == "Fn::GetAtt":
                    found.add(argument[0] if isinstance(argument, list) else argument.split(".", 1)[0])
                elif key == "Fn::Sub":
                    text, variables = (argument, {}) if isinstance(argument, str) else argument
                    names = {name.split(".", 1)[0] for name in _SUB_VARIABLE.findall(text)}
                    found.update(names - set(variables))
                    walk(variables)
                else:
                    walk(argument)
        elif isinstance(item, list):
            for element in item:
                walk(element)

    walk(value)
    return found & ids


def depends_on(resource: dict) -> list[str]:
    value = resource.get("DependsOn", [])
    return [value] if isinstance(value, str) else list(value)


# --- conditions ---------------------------------------------------------------------------------


def resolve_conditions(template: dict, parameters: dict[str, str] | None = None) -> tuple[dict, list[str]]:
    """The template with its conditions applied, and the logical ids left out by a false condition.

    Resources and Outputs whose ``Condition`` is false are dropped (with every ``DependsOn`` on them),
    each ``Fn::If`` is replaced by its chosen branch and ``AWS::NoValue`` removed from its dict or list.
    Everything else (Ref, GetAtt, Sub) is left for CloudFormation, here moto, to resolve."""
    resolver = Resolver(template, dict(parameters or {}), names={})
    result = copy.deepcopy(template)

    def apply(value):
        if isinstance(value, dict) and len(value) == 1:
            [(key, argument)] = value.items()
            if key == "Fn::If":
                condition, if_true, if_false = argument
                return apply(if_true if resolver.condition(condition) else if_false)
            if key == "Ref" and argument == "AWS::NoValue":
                return NO_VALUE
        if isinstance(value, dict):
            return {k: v for k, v in ((k, apply(v)) for k, v in value.items()) if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (apply(v) for v in value) if v is not NO_VALUE]
        return value

    def kept(section: dict) -> dict:
        return {
            logical_id: item
            for logical_id, item in section.items()
            if "Condition" not in item or resolver.condition(item["Condition"])
        }

    resources = kept(result["Resources"])
    left_out = [logical_id for logical_id in result["Resources"] if logical_id not in resources]
    for resource in resources.values():
        resource.pop("Condition", None)
        if "DependsOn" in resource:
            remaining = [d for d in depends_on(resource) if d in resources]
            if remaining:
                resource["DependsOn"] = remaining
            else:
                del resource["DependsOn"]
    result["Resources"] = apply(resources)
    if "Outputs" in result:
        outputs = kept(result["Outputs"])
        for output in outputs.values():
            output.pop("Condition", None)
        result["Outputs"] = apply(outputs)
    result.pop("Conditions", None)
    return result, left_out


# --- the REST API's OpenAPI body as resources ------------------------------------------------------

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "x-amazon-apigateway-any-method")


def _id_part(segment: str) -> str:
    """`{job_id}` -> `JobIdParam`, `skin-lesion` -> `SkinLesion`, `openapi.json` -> `OpenapiJson`."""
    words = re.split(r"[^A-Za-z0-9]+", segment.strip("{}"))
    return "".join(word[:1].upper() + word[1:] for word in words) + ("Param" if segment.startswith("{") else "")


def _http_method(operation: str) -> str:
    return "ANY" if operation == "x-amazon-apigateway-any-method" else operation.upper()


# OpenAPI's x-amazon-apigateway-authtype -> a method's AuthorizationType (a Lambda authorizer: CUSTOM).
AUTHORIZATION_TYPES = {"cognito_user_pools": "COGNITO_USER_POOLS", "awsSigv4": "AWS_IAM"}


def authorization(operation: dict, security_definitions: dict) -> tuple[str, bool]:
    """(AuthorizationType, ApiKeyRequired) of an OpenAPI operation as API Gateway imports it."""
    schemes = [name for requirement in operation.get("security", []) for name in requirement]
    api_key = "api_key" in schemes  # SAM's name for the API key scheme
    for name in schemes:
        if name in ("NONE", "api_key"):
            continue
        auth_type = security_definitions.get(name, {}).get("x-amazon-apigateway-authtype", "custom")
        return AUTHORIZATION_TYPES.get(auth_type, "CUSTOM"), api_key
    return "NONE", api_key


def routes(body: dict) -> dict[tuple[str, str], dict]:
    """(path, HTTP method) -> {"AuthorizationType", "ApiKeyRequired", "Integration": {Type, IntegrationHttpMethod,
    Uri}} of an OpenAPI body with API Gateway's integrations (SAM's `Body`)."""
    security_definitions = body.get("securityDefinitions", {})
    table = {}
    for path, item in body.get("paths", {}).items():
        for operation_name, operation in item.items():
            if operation_name not in HTTP_METHODS:
                continue
            auth_type, api_key = authorization(operation, security_definitions)
            integration = operation.get("x-amazon-apigateway-integration", {})
            table[path, _http_method(operation_name)] = {
                "AuthorizationType": auth_type,
                "ApiKeyRequired": api_key,
                "Integration": {
                    "Type": integration.get("type", "mock").upper(),
                    "IntegrationHttpMethod": integration.get("httpMethod"),
                    "Uri": integration.get("uri"),
                },
            }
    return table


def body_resources(api_id: str, body: dict, taken: Iterable[str] = ()) -> dict[str, dict]:
    """The Resource (one a path segment) and Method (one an operation) resources of an API's Body."""
    taken = set(taken)
    new: dict[str, dict] = {}
    path_ids: dict[str, str] = {}

    def add(logical_id: str, resource: dict, what: str) -> None:
        if logical_id in taken or logical_id in new:
            raise ValueError(f"{api_id}: the logical id {logical_id} of {what} is taken")
        new[logical_id] = resource

    def resource_for(path: str) -> dict:
        """The ResourceId of a path, creating its Resource (and its parents') on the way."""
        if path == "/":
            return {"Fn::GetAtt": [api_id, "RootResourceId"]}
        if path not in path_ids:
            parent, _, part = path.rpartition("/")
            logical_id = api_id + "".join(_id_part(s) for s in path.strip("/").split("/")) + "Resource"
            properties = {"RestApiId": {"Ref": api_id}, "ParentId": resource_for(parent or "/"), "PathPart": part}
            add(logical_id, {"Type": "AWS::ApiGateway::Resource", "Properties": properties}, path)
            path_ids[path] = logical_id
        return {"Ref": path_ids[path]}

    for (path, method), route in routes(body).items():
        name = "".join(_id_part(s) for s in path.strip("/").split("/")) or "Root"
        properties = {"RestApiId": {"Ref": api_id}, "ResourceId": resource_for(path), "HttpMethod": method}
        add(
            f"{api_id}{name}{method.title()}Method",
            {"Type": "AWS::ApiGateway::Method", "Properties": properties | route},
            f"{method} {path}",
        )
    return new


def api_body_to_resources(template: dict) -> tuple[dict, dict[str, list[str]]]:
    """Each REST API's Body as Resource and Method resources; returns the template and, per API, the
    logical ids added. The Body itself is removed (moto would ignore it); deployments of the API wait
    for its methods, as they would on AWS."""
    result = copy.deepcopy(template)
    resources = result["Resources"]
    added: dict[str, list[str]] = {}
    for api_id, api in list(resources.items()):
        properties = api.get("Properties", {})
        if api["Type"] != "AWS::ApiGateway::RestApi" or "Body" not in properties:
            continue
        body = properties.pop("Body")
        properties.setdefault("Name", body.get("info", {}).get("title", api_id))
        new = body_resources(api_id, body, resources)
        methods = [logical_id for logical_id, r in new.items() if r["Type"] == "AWS::ApiGateway::Method"]
        for resource in resources.values():
            if resource["Type"] == "AWS::ApiGateway::Deployment" and api_id in references(
                resource.get("Properties", {}).get("RestApiId"), [api_id]
            ):
                resource["DependsOn"] = sorted(set(depends_on(resource)) | set(methods))
        resources.update(new)
        added[api_id] = list(new)
    return result, added


# --- creation order ---------------------------------------------------------------------------------


def dependencies(template: dict) -> dict[str, set[str]]:
    """Logical id -> the resources it needs first (references and DependsOn)."""
    resources = template["Resources"]
    return {
        logical_id: (references(resource, resources) | set(depends_on(resource))) - {logical_id}
        for logical_id, resource in resources.items()
    }


def dependency_order(template: dict) -> dict:
    """The template with its Resources reordered so each comes after everything it needs; otherwise in
    template order. A cycle raises ValueError naming its resources."""
    needs = dependencies(template)
    missing = {f"{lid} -> {d}" for lid, ds in needs.items() for d in ds if d not in needs}
    if missing:
        raise ValueError(f"references to resources not in the template: {', '.join(sorted(missing))}")
    ordered: list[str] = []
    done: set[str] = set()
    remaining = list(needs)
    while remaining:
        ready = next((lid for lid in remaining if needs[lid] <= done), None)
        if ready is None:
            raise ValueError(f"dependency cycle among: {', '.join(sorted(remaining))}")
        ordered.append(ready)
        done.add(ready)
        remaining.remove(ready)
    result = dict(template)
    result["Resources"] = {lid: template["Resources"][lid] for lid in ordered}
    return result


# --- names moto would generate wrongly --------------------------------------------------------------


def lowercase_names(template: dict, name_properties: dict[str, str], stack_name: str) -> tuple[dict, list[str]]:
    """Resources of these types (type -> name property) without a name get the lowercase name
    CloudFormation would generate (`<stack>-<logical id>`); returns the template and the ids named."""
    result = copy.deepcopy(template)
    named = []
    for logical_id, resource in result["Resources"].items():
        name_property = name_properties.get(resource["Type"])
        if name_property and name_property not in resource.get("Properties", {}):
            resource.setdefault("Properties", {})[name_property] = f"{stack_name}-{logical_id}".lower()
            named.append(logical_id)
    return result, named


# --- stand-ins for resources moto cannot create ------------------------------------------------------


def alias_function_arn(resource: dict) -> dict:
    """A stand-in for `Ref` of an AWS::Lambda::Alias (the function's ARN qualified by the alias name): the
    function's unqualified ARN. moto has no alias to qualify it with, and refuses a qualified ARN."""
    return {
        "Fn::Sub": [
            "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Function}",
            {"Function": resource["Properties"]["FunctionName"]},
        ]
    }


def first_version_arn(resource: dict) -> dict:
    """A stand-in for `Ref` of an AWS::Lambda::Version (the function's ARN qualified by the version number):
    version 1, the first a fresh stack publishes. moto gives the Ref no value (an environment variable
    holding it breaks GetFunctionConfiguration)."""
    return {
        "Fn::Sub": [
            "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Function}:1",
            {"Function": resource["Properties"]["FunctionName"]},
        ]
    }


def stand_in_references(template: dict, stand_ins: dict) -> tuple[dict, dict[str, object]]:
    """Every `Ref` (and `${id}` in a Sub) to a resource whose type has a stand-in (type -> function of the
    resource giving the intrinsic that stands for its Ref) replaced by that intrinsic. moto cannot create
    those resources, and without a value a resource that names one fails to create (e.g. a permission on an
    alias). Returns the template and logical id -> the intrinsic used."""
    replacements = {
        logical_id: stand_ins[resource["Type"]](resource)
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] in stand_ins
    }

    def replace(value):
        if isinstance(value, dict) and len(value) == 1:
            [(key, argument)] = value.items()
            if key == "Ref" and argument in replacements:
                return copy.deepcopy(replacements[argument])
            if key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                named = set(_SUB_VARIABLE.findall(text)) & set(replacements)
                variables = {k: replace(v) for k, v in variables.items()}
                variables |= {name: copy.deepcopy(replacements[name]) for name in named if name not in variables}
                return {"Fn::Sub": [text, variables] if variables else text}
        if isinstance(value, dict):
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        return value

    result = copy.deepcopy(template)
    for logical_id, resource in result["Resources"].items():
        if logical_id not in replacements:
            result["Resources"][logical_id] = replace(resource)
    if "Outputs" in result:
        result["Outputs"] = replace(result["Outputs"])
    return result, replacements
