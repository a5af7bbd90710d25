"""The API's one OpenAPI document (functions/predict/openapi.json, served at /openapi.json and /docs):
generated from every function's Powertools resolver and template.yaml's Api events, never by hand,
and checked here against both: a route, schema or template change without a regeneration fails."""

import copy
import dataclasses
import json
from typing import Annotated

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Body
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import BaseModel, create_model
from samcli.yamlhelper import yaml_parse

from med_classifier.api.errors import error_doc, gateway_error_doc
from med_classifier.api.image_requests import images_from_body
from med_classifier.api.openapi import SIGN_IN_REQUIRED, ApiRoute, SpecError, function_document, merged_document
from med_classifier.domain.errors import ClassifierError
from med_classifier.domain.jobs import JobRecord
from med_classifier.domain.serving import PredictionResult
from med_classifier.domain.uploads import UploadTicket
from scripts import openapi as generator
from scripts.local_runner.api import yaml_safe_loader_preserved
from tests.helpers.models import REPO_ROOT, LambdaContext, load_function_module

SPEC_FILE = REPO_ROOT / "functions" / "predict" / "openapi.json"
with yaml_safe_loader_preserved():  # SAM's parser would change yaml.safe_load for the whole test run
    TEMPLATE = yaml_parse((REPO_ROOT / "template.yaml").read_text())


def template_api_routes(template: dict = TEMPLATE) -> dict[tuple[str, str], dict]:
    """(path, method) -> the event's Properties, for every Api event of every function, read
    here without the generator's code."""
    routes = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in (resource["Properties"].get("Events") or {}).values():
            if event["Type"] == "Api":
                key = (event["Properties"]["Path"], event["Properties"]["Method"].lower())
                assert key not in routes, key
                routes[key] = event["Properties"]
    return routes


def operations(spec: dict):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


@pytest.fixture(scope="module")
def served() -> dict:
    """GET /openapi.json, answered by the predict function's handler."""
    module = load_function_module("predict")
    event = json.loads((REPO_ROOT / "events" / "api-health.json").read_text())
    event.update(path="/openapi.json", resource="/openapi.json")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
        response = module.lambda_handler(event, LambdaContext())
    assert response["statusCode"] == 200
    return json.loads(response["body"])


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    """Each API function's own document, as Powertools generates it."""
    return {
        function.logical_id: function_document(generator.load_resolver(function))
        for function in generator.api_functions(TEMPLATE)
    }


# --- the document matches the template and the code ---------------------------------------------


def test_the_served_document_has_exactly_the_templates_api_routes(served):
    assert {(path, method) for path, method, _ in operations(served)} == set(template_api_routes())
    # Every function behind the API, and the literal image routes API Gateway prefers over {model}.
    assert {"/models/skin-lesion/predict", "/models/chest-ct/predict", "/models/{model}/retrain", "/"} <= set(
        served["paths"]
    )


def test_the_committed_document_is_a_fresh_generation():
    assert SPEC_FILE.read_text(encoding="utf-8") == generator.render(generator.build()), (
        "functions/predict/openapi.json is stale: run .venv/bin/python -m scripts.openapi"
    )


def test_check_mode_passes_on_the_committed_file_and_fails_on_a_stale_one(tmp_path, capsys):
    assert generator.main(["--check"]) == 0
    stale = tmp_path / "openapi.json"
    stale.write_text(SPEC_FILE.read_text(encoding="utf-8").replace("Start a retraining job now", "Start a job"))
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert capsys.readouterr().err == f"{stale} is stale: run .venv/bin/python -m scripts.openapi\n"


def test_a_route_added_to_the_template_but_not_the_code_is_refused(documents):
    template = copy.deepcopy(TEMPLATE)
    events = template["Resources"]["PredictFunction"]["Properties"]["Events"]
    events["Explain"] = {"Type": "Api", "Properties": {"Path": "/models/{model}/explain", "Method": "POST"}}
    with pytest.raises(SpecError) as refused:
        merged_document(routes_of(template), documents)
    assert str(refused.value) == (
        "template.yaml routes POST /models/{model}/explain (event Explain) to PredictFunction, "
        "but PredictFunction's resolver has no operation for it."
    )


def test_a_route_in_the_code_that_the_template_does_not_route_is_refused(documents):
    template = copy.deepcopy(TEMPLATE)
    del template["Resources"]["PredictFunction"]["Properties"]["Events"]["Docs"]
    with pytest.raises(SpecError) as refused:
        merged_document(routes_of(template), documents)
    assert str(refused.value) == "PredictFunction serves GET /docs, but no Api event in template.yaml routes it there."


def routes_of(template: dict) -> list[ApiRoute]:
    return [route for function in generator.api_functions(template) for route in function.routes]


def test_the_document_is_valid_openapi_3_1(served):
    validate(served)
    assert served["openapi"] == "3.1.0" and "NOT FOR CLINICAL USE" in served["info"]["description"]


def test_operation_ids_are_the_templates_event_names(served):
    names = {(props["Path"], props["Method"].lower()) for props in template_api_routes().values()}
    ids = {operation["operationId"] for _, _, operation in operations(served)}
    assert len(ids) == len(names) == len(list(operations(served)))
    expected = {
        name
        for resource in TEMPLATE["Resources"].values()
        for name, event in (resource.get("Properties", {}).get("Events") or {}).items()
        if event.get("Type") == "Api"
    }
    assert ids == expected


# --- security: what API Gateway enforces -----------------------------------------------------------


def test_only_the_routes_the_template_guards_with_the_cognito_authorizer_declare_it(served):
    template = template_api_routes()
    for path, method, operation in operations(served):
        signed_in = (template[path, method].get("Auth") or {}).get("Authorizer") != "NONE"
        assert operation.get("security") == (SIGN_IN_REQUIRED if signed_in else None), (path, method)
        if signed_in:  # API Gateway's own 401, in its own shape
            unauthorized = operation["responses"]["401"]
            assert unauthorized["content"] == {
                "application/json": {"schema": {"$ref": "#/components/schemas/GatewayError"}}
            }
    open_routes = {(p, m) for p, m, op in operations(served) if "security" not in op}
    assert open_routes == {
        ("/", "get"),
        ("/health", "get"),
        ("/openapi.json", "get"),
        ("/docs", "get"),
        ("/auth/config", "get"),
    }
    assert "security" not in served  # no document-wide requirement
    scheme = served["components"]["securitySchemes"]["CognitoUserPool"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    group_only = {(p, m) for p, m, op in operations(served) if "403" in op["responses"]}
    assert group_only == {
        ("/models/{model}/uploads", "post"),
        ("/models/{model}/retrain", "post"),
        ("/models/{model}/retrain/{job_id}", "get"),
    }
    assert served["components"]["schemas"]["GatewayError"]["required"] == ["message"]


# --- responses: success and every error, in the one error shape --------------------------------------

SUCCESS = {
    ("/", "get"): ("200", "text/html", {"type": "string"}),
    ("/health", "get"): ("200", "application/json", "HealthResponse"),
    ("/models", "get"): ("200", "application/json", "ModelList"),
    ("/models/{model}", "get"): ("200", "application/json", "ModelView"),
    ("/models/{model}/drift", "get"): ("200", "application/json", "DriftReportResponse"),
    ("/models/{model}/predict", "post"): ("200", "application/json", "PredictResponse"),
    ("/openapi.json", "get"): ("200", "application/json", None),
    ("/docs", "get"): ("200", "text/html", {"type": "string"}),
    ("/auth/config", "get"): ("200", "application/json", "SignInConfig"),
    ("/models/skin-lesion/predict", "post"): ("200", "application/json", "PredictResponse"),
    ("/models/chest-ct/predict", "post"): ("200", "application/json", "PredictResponse"),
    ("/models/{model}/uploads", "post"): ("201", "application/json", "UploadTicketResponse"),
    ("/models/{model}/retrain", "post"): ("202", "application/json", "JobRecord"),
    ("/models/{model}/retrain/{job_id}", "get"): ("200", "application/json", "JobRecord"),
}


def test_every_operation_documents_its_success_and_its_schema(served):
    assert set(SUCCESS) == {(path, method) for path, method, _ in operations(served)}
    for path, method, operation in operations(served):
        status, media_type, schema = SUCCESS[path, method]
        assert [s for s in operation["responses"] if s.startswith("2")] == [status], (path, method)
        content = operation["responses"][status]["content"]
        assert list(content) == [media_type], (path, method)
        if isinstance(schema, str):
            assert content[media_type]["schema"] == {"$ref": f"#/components/schemas/{schema}"}, (path, method)
        elif schema is not None:
            assert content[media_type]["schema"] == schema, (path, method)
    document_schema = served["paths"]["/openapi.json"]["get"]["responses"]["200"]["content"]["application/json"]
    assert document_schema["schema"]["required"] == ["openapi", "info", "paths"]


ERRORS = {
    ("/models", "get"): {"401"},
    ("/models/{model}", "get"): {"401", "404"},
    ("/models/{model}/drift", "get"): {"401", "404"},
    ("/models/{model}/predict", "post"): {"400", "401", "404", "413", "415", "422", "503"},
    ("/models/skin-lesion/predict", "post"): {"400", "401", "404", "413", "415", "422", "503"},
    ("/models/chest-ct/predict", "post"): {"400", "401", "404", "413", "415", "422", "503"},
    ("/models/{model}/uploads", "post"): {"400", "401", "403", "404", "413", "415", "422"},
    ("/models/{model}/retrain", "post"): {"400", "401", "403", "404", "409", "413", "415", "422", "503"},
    ("/models/{model}/retrain/{job_id}", "get"): {"401", "403", "404"},
}


def test_every_error_status_is_documented_in_the_one_error_shape(served):
    for path, method, operation in operations(served):
        errors = {status for status in operation["responses"] if int(status) >= 400}
        assert errors == ERRORS.get((path, method), set()), (path, method)
        for status in errors:
            expected = "GatewayError" if status == "401" else "ErrorResponse"  # 401: API Gateway's authorizer
            schema = {"$ref": f"#/components/schemas/{expected}"}
            assert operation["responses"][status]["content"] == {"application/json": {"schema": schema}}
    schemas = served["components"]["schemas"]
    assert schemas["ErrorResponse"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert schemas["ErrorBody"]["required"] == ["code", "message", "details"]
    # Powertools' own 422 shape ({"detail": [...]}) is never what a client gets.
    assert not {"HTTPValidationError", "ValidationError"} & set(schemas)


def test_json_request_bodies_document_400_415_and_422(served):
    bodies = [(path, op) for path, method, op in operations(served) if "requestBody" in op]
    json_only = [(path, op) for path, op in bodies if list(op["requestBody"]["content"]) == ["application/json"]]
    assert [path for path, _ in json_only] == [
        "/models/{model}/predict",
        "/models/{model}/uploads",
        "/models/{model}/retrain",
    ]
    for path, operation in json_only:
        assert {"400", "415", "422"} <= set(operation["responses"]), path


# --- one definition per shape ---------------------------------------------------------------------


def test_a_job_has_one_definition_the_domain_record(served):
    schemas = served["components"]["schemas"]
    names = [f.name for f in dataclasses.fields(JobRecord)]
    assert list(schemas["JobRecord"]["properties"]) == names and schemas["JobRecord"]["required"] == names
    assert schemas["JobRecord"]["properties"]["state"]["enum"] == [
        "Pending",
        "InProgress",
        "Completed",
        "Failed",
        "Stopped",
    ]
    assert schemas["RetrainingStatus"]["properties"]["jobs"]["items"] == {"$ref": "#/components/schemas/JobRecord"}
    assert [name for name in schemas if "Job" in name] == ["JobRecord"]


def test_renamed_response_models_take_their_fields_from_the_domain(served):
    schemas = served["components"]["schemas"]
    predict = ["model" if f.name == "model_id" else f.name for f in dataclasses.fields(PredictionResult)]
    # The inputs' summaries (for OOD checks and drift capture) stay out of the response.
    assert predict[-1] == "inputs"
    assert (
        list(schemas["PredictResponse"]["properties"])
        == predict[:-1] + ["notice"]
        == schemas["PredictResponse"]["required"]
    )
    ticket = ["model" if f.name == "model_id" else f.name for f in dataclasses.fields(UploadTicket)]
    assert list(schemas["UploadTicketResponse"]["properties"]) == ticket + ["notice"]
    assert schemas["PredictResponse"]["properties"]["predictions"]["items"] == {
        "$ref": "#/components/schemas/Prediction"
    }


def test_the_model_view_extends_the_summary_and_leaves_out_what_it_does_not_have(served):
    schemas = served["components"]["schemas"]
    summary, view = schemas["ModelSummary"], schemas["ModelView"]
    assert list(view["properties"]) == list(summary["properties"]) + ["versions", "retraining"]
    # Left out (not null) when there is nothing to say: the manifest's keys and a tabular model's retraining.
    left_out = {"description", "input", "training_data", "retraining", "gate", "operating_point", "calibration"}
    assert left_out.isdisjoint(view["required"])
    assert view["properties"]["operating_point"]["anyOf"][0] == {"$ref": "#/components/schemas/OperatingPoint"}
    assert view["properties"]["calibration"]["anyOf"][0] == {"$ref": "#/components/schemas/Calibration"}
    assert {"model", "production_version", "n_versions", "versions", "quantization"} <= set(view["required"])


@pytest.mark.parametrize(
    "document, accepted",
    [
        ({"images": ["aGk="]}, True),
        ({"images": ["aGk=", "data:image/png;base64,aGk="]}, True),
        ({"images": []}, False),
        ({"images": ["aGk="], "model": "x"}, False),
        ({"images": [1]}, False),
        ({"image": ["aGk="]}, False),
    ],
)
def test_the_documented_image_json_body_is_what_the_image_function_accepts(served, document, accepted):
    body = served["paths"]["/models/skin-lesion/predict"]["post"]["requestBody"]
    assert set(body["content"]) == {"image/jpeg", "image/png", "application/json"}
    assert Draft202012Validator(body["content"]["application/json"]["schema"]).is_valid(document) is accepted
    try:
        images_from_body("skin-lesion", "application/json", json.dumps(document).encode())
        parsed = True
    except ClassifierError:
        parsed = False
    assert parsed is accepted


# --- the merge's guards, on small resolvers --------------------------------------------------------


class Thing(BaseModel):
    name: str


# Another model called Thing, with another shape (as two functions' modules might each define one).
OtherThing = create_model("Thing", name=(int, ...))


def resolver(*, security=None, responses=None, body_model=None, path: str = "/things") -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)
    documented = {200: {"description": "Done"}, **(responses or {})}
    if body_model is None:

        @app.post(path, security=security, responses=documented)
        def act() -> dict:
            return {}
    else:

        @app.post(path, security=security, responses=documented)
        def act_on(thing: Annotated[body_model, Body(embed=False)]) -> dict:
            return {}

    return app


def merge(routes: list[ApiRoute], **resolvers) -> dict:
    return merged_document(routes, {name: function_document(app) for name, app in resolvers.items()})


def test_a_literal_template_route_takes_the_operation_of_its_path_parameter():
    app = APIGatewayRestResolver(enable_validation=True)

    @app.get("/things/<thing>", summary="One thing", responses={200: {"description": "It"}})
    def get_thing(thing: str) -> dict:
        return {}

    merged = merge([ApiRoute("F", "GetRed", "/things/red", "get")], F=app)
    assert list(merged["paths"]) == ["/things/red"]
    operation = merged["paths"]["/things/red"]["get"]
    assert (operation["operationId"], operation["summary"]) == ("GetRed", "One thing (thing red)")
    assert "parameters" not in operation and "422" not in operation["responses"]  # nothing left to validate


@pytest.mark.parametrize("template_requires, declared", [(True, None), (False, SIGN_IN_REQUIRED)])
def test_security_the_template_does_not_enforce_or_the_route_does_not_declare_is_refused(template_requires, declared):
    app = resolver(security=declared, responses={401: gateway_error_doc("No token")})
    with pytest.raises(SpecError) as refused:
        merge([ApiRoute("F", "Act", "/things", "post", signed_in=template_requires)], F=app)
    needs = "the Cognito authorizer" if template_requires else "Authorizer: NONE"
    assert str(refused.value) == (
        f"POST /things: template.yaml gives it {needs}, but the route declares security {declared}."
    )


def test_a_signed_in_route_must_document_api_gateways_401():
    with pytest.raises(SpecError) as refused:
        merge([ApiRoute("F", "Act", "/things", "post", signed_in=True)], F=resolver(security=SIGN_IN_REQUIRED))
    assert str(refused.value) == "POST /things needs a signed-in caller but does not document API Gateway's 401."


def test_a_body_that_can_fail_validation_must_document_422_in_the_error_shape():
    with pytest.raises(SpecError) as refused:
        merge([ApiRoute("F", "Act", "/things", "post")], F=resolver(body_model=Thing))
    assert str(refused.value) == (
        "POST /things can answer 422 (request validation) but does not document it in the error shape: "
        "add responses={422: error_doc(...)}."
    )
    documented = merge(
        [ApiRoute("F", "Act", "/things", "post")], F=resolver(body_model=Thing, responses={422: error_doc("Bad")})
    )
    assert documented["paths"]["/things"]["post"]["responses"]["422"]["description"] == "Bad"


def test_two_shapes_under_one_schema_name_are_refused():
    with pytest.raises(SpecError) as refused:
        merge(
            [ApiRoute("F", "Act", "/things", "post"), ApiRoute("G", "Other", "/others", "post")],
            F=resolver(body_model=Thing, responses={422: error_doc("Bad")}),
            G=resolver(body_model=OtherThing, responses={422: error_doc("Bad")}, path="/others"),
        )
    assert str(refused.value) == (
        "components.schemas.Thing differs between F and G: one name, one shape "
        "(a model used as request and response gets two names)."
    )


def test_duplicate_operation_ids_are_refused():
    with pytest.raises(SpecError) as refused:
        merge(
            [ApiRoute("F", "Act", "/things", "post"), ApiRoute("G", "Act", "/others", "post")],
            F=resolver(),
            G=resolver(path="/others"),
        )
    assert str(refused.value) == "Duplicate operationIds (template.yaml event names): ['Act', 'Act']"
