"""Writes the API's one OpenAPI document, functions/predict/openapi.json, which the predict
function serves at /openapi.json and (with Swagger UI) at /docs.

    .venv/bin/python -m scripts.openapi          # after changing a route, a schema or template.yaml
    .venv/bin/python -m scripts.openapi --check  # exit status 1 if the committed file is stale

On AWS each function is deployed on its own, so the document is generated here, from the code:
every function with Api events in template.yaml is imported as Lambda imports it (its folder on
sys.path, its handler module under a name of its own), Powertools generates each one's document,
and med_classifier.api.openapi.merged_document merges them into the routes API Gateway serves.
tests/unit/test_openapi.py fails when the committed file differs from a fresh generation.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

from med_classifier.api.openapi import ApiRoute, function_document, merged_document
from scripts.local_runner.cognito import api_auth, route_authorizer

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "template.yaml"
OUTPUT = REPO_ROOT / "functions" / "predict" / "openapi.json"


@dataclass(frozen=True)
class ApiFunction:
    """A function of the template that API Gateway routes requests to."""

    logical_id: str
    code_uri: str
    handler: str  # module.attribute
    routes: tuple[ApiRoute, ...]


def read_template(path: Path = TEMPLATE) -> dict:
    """template.yaml as SAM CLI parses it (intrinsic functions kept as data)."""
    from samcli.yamlhelper import yaml_parse

    from scripts.local_runner.api import yaml_safe_loader_preserved

    with yaml_safe_loader_preserved():  # SAM's parser would change yaml.safe_load for the whole process
        return yaml_parse(path.read_text(encoding="utf-8"))


def api_functions(template: dict) -> list[ApiFunction]:
    """Every function with events of Type Api, with its routes in template order."""
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties", {})
        routes = tuple(
            ApiRoute(
                function=logical_id,
                event=name,
                path=event["Properties"]["Path"],
                method=event["Properties"]["Method"].lower(),
                signed_in=route_authorizer(api_auth(template["Resources"], event["Properties"]), event["Properties"])
                is not None,
            )
            for name, event in (properties.get("Events") or {}).items()
            if event.get("Type") == "Api"
        )
        if routes:
            found.append(ApiFunction(logical_id, properties["CodeUri"], properties["Handler"], routes))
    return found


def load_resolver(function: ApiFunction, root: Path = REPO_ROOT) -> ApiGatewayResolver:
    """The Powertools resolver of the function's handler module, imported as Lambda does."""
    folder = (root / function.code_uri).resolve()
    module_name = function.handler.rsplit(".", 1)[0]
    name = f"openapi_{function.logical_id}_{module_name}"  # every function's module is called app
    spec = importlib.util.spec_from_file_location(name, folder / f"{module_name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    if callable(getattr(module, "resolver", None)):  # a handler that imports its routes on demand
        return module.resolver()
    resolvers = [value for value in vars(module).values() if isinstance(value, ApiGatewayResolver)]
    if len(resolvers) != 1:
        raise ValueError(f"{function.logical_id}: expected one Powertools resolver in {name}, found {len(resolvers)}")
    return resolvers[0]


def build(template: dict | None = None, root: Path = REPO_ROOT) -> dict:
    """The API's document for `template` (template.yaml by default)."""
    functions = api_functions(template if template is not None else read_template())
    documents = {function.logical_id: function_document(load_resolver(function, root)) for function in functions}
    return merged_document([route for function in functions for route in function.routes], documents)


def render(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed file")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render(build(read_template(args.template)))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run .venv/bin/python -m scripts.openapi", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    document = json.loads(text)
    operations = sum(len(methods) for methods in document["paths"].values())
    print(f"wrote {args.output}: {operations} operations on {len(document['paths'])} paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
