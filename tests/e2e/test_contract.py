"""The API's OpenAPI document against the running local stack: for every operation, a real success
and a real response for every error status the document lists, each validated against the schema
the document gives for that status and content type ($refs resolved). NOT FOR CLINICAL USE.

Some statuses only happen on a deployment whose models are missing or not promoted (an image
model's literal route cannot name an unknown model, and a warm function keeps serving what it
has): those are provoked on a second local API, served from the same template, whose models
bucket starts empty."""

import base64
import io
import json
from collections.abc import Callable

import jsonschema
import numpy as np
import pytest
import requests
from openapi_schema_validator import OAS31Validator
from PIL import Image

from med_classifier.adapters.model_store import ModelStore
from scripts.local_stack import free_port
from tests.e2e.conftest import RETRAIN_THRESHOLDS, RejectedJob
from tests.helpers.image_models import colour_candidate
from tests.helpers.keras_models import chest_ct_candidate
from tests.helpers.local_stack import write_env_file
from tests.helpers.models import MALIGNANT_EXAMPLE, REPO_ROOT, breast_cancer_candidate, publish
from tests.helpers.polling import wait_for
from tests.helpers.skin_lesion import skin_lesion_candidate
from training.datasets import chest_ct, ham10000

BARE_BUCKET = "med-classifier-models-e2e-bare"
UNLAUNCHABLE = "colour-unlaunchable"  # an image model in the bare deployment, whose jobs cannot start
ANONYMOUS = {"Authorization": None}  # the stack's session signs in as an ml-admin; this drops it


class Api:
    """The running stack, the bare one, and the retraining job some checks need (started once)."""

    def __init__(self, stack: dict, bare_url: str, retrain_job: RejectedJob):
        self.stack, self.url, self.bare_url, self.http = stack, stack["url"], bare_url, stack["http"]
        self.retrain_job = retrain_job  # a manual chest-ct job with a gate no model passes, ended

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.http.post(self.url + path, timeout=60, **kwargs)

    def as_user(self, user: str) -> dict[str, str]:
        """Headers that sign in as a demo user (scripts/local_cognito.py) instead of the session's ml-admin."""
        return {"Authorization": self.stack["tokens"][user]}

    def post_bare(self, path: str, **kwargs) -> requests.Response:
        return self.http.post(self.bare_url + path, timeout=60, **kwargs)

    def publish_unpromoted(self, candidate) -> None:
        publish(ModelStore(BARE_BUCKET, self.stack["s3"]), candidate, promote=False)


Exchanges = list[tuple[int, requests.Response]]
OPERATIONS: dict[tuple[str, str], Callable[[Api], Exchanges]] = {}


def operation(path: str, method: str):
    def register(check: Callable[[Api], Exchanges]):
        OPERATIONS[path, method] = check
        return check

    return register


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


NOISE_PNG = png(Image.fromarray(np.random.default_rng(3).integers(0, 255, (96, 96, 3), dtype=np.uint8)))
TEXT = {"data": "17.99, 10.38", "headers": {"Content-Type": "text/plain"}}
NOT_JSON = {"data": '{"label": ', "headers": {"Content-Type": "application/json"}}
TOO_DEEP = {"data": "[" * 40 + "]" * 40, "headers": {"Content-Type": "application/json"}}
OVER_64_KIB = {"data": '{"label": "' + "x" * 65536 + '"}', "headers": {"Content-Type": "application/json"}}


@operation("/", "get")
def page(api: Api) -> Exchanges:
    return [(200, api.get("/"))]


@operation("/docs", "get")
def docs(api: Api) -> Exchanges:
    return [(200, api.get("/docs"))]


@operation("/openapi.json", "get")
def openapi_json(api: Api) -> Exchanges:
    return [(200, api.get("/openapi.json"))]


@operation("/auth/config", "get")
def sign_in_config(api: Api) -> Exchanges:
    return [(200, api.get("/auth/config", headers=ANONYMOUS))]


@operation("/health", "get")
def health(api: Api) -> Exchanges:
    api.post("/models/breast-cancer/predict", json={"instances": [MALIGNANT_EXAMPLE]})  # a model is loaded
    return [(200, api.get("/health"))]


@operation("/models", "get")
def list_models(api: Api) -> Exchanges:
    return [(200, api.get("/models")), (401, api.get("/models", headers=ANONYMOUS))]


@operation("/models/{model}", "get")
def get_model(api: Api) -> Exchanges:
    return [
        (200, api.get("/models/breast-cancer")),
        (200, api.get("/models/chest-ct")),  # an image model: with its upload counter and jobs
        (404, api.get("/models/no-such-model")),
        (401, api.get("/models/chest-ct", headers=ANONYMOUS)),
    ]


@operation("/models/{model}/drift", "get")
def get_drift(api: Api) -> Exchanges:
    # The stack's drift monitor runs on its schedule and writes a report for every production model.
    def report():
        response = api.get("/models/breast-cancer/drift")
        return response if response.status_code == 200 else None

    return [
        (200, wait_for(report, 120, "the drift monitor's first breast-cancer report")),
        (404, api.get("/models/no-such-model/drift")),
        (401, api.get("/models/breast-cancer/drift", headers=ANONYMOUS)),
    ]


@operation("/models/{model}/predict", "post")
def predict(api: Api) -> Exchanges:
    path = "/models/breast-cancer/predict"
    api.publish_unpromoted(breast_cancer_candidate())
    return [
        (200, api.post(path, json={"instances": [MALIGNANT_EXAMPLE, MALIGNANT_EXAMPLE]})),
        (200, api.post(path, json={"instances": [MALIGNANT_EXAMPLE], "explain": True})),
        (400, api.post(path, **NOT_JSON)),
        (401, api.post(path, json={"instances": [MALIGNANT_EXAMPLE]}, headers=ANONYMOUS)),
        (404, api.post("/models/no-such-model/predict", json={"instances": [MALIGNANT_EXAMPLE]})),
        (413, api.post(path, json={"instances": [MALIGNANT_EXAMPLE] * 101})),
        (415, api.post(path, **TEXT)),
        (422, api.post(path, json={"instances": [MALIGNANT_EXAMPLE[:10]]})),
        (422, api.post(path, json={"rows": [MALIGNANT_EXAMPLE]})),  # request validation
        (503, api.post_bare(path, json={"instances": [MALIGNANT_EXAMPLE]})),
    ]


def image_route(api: Api, model: str, example: bytes, candidate: Callable) -> Exchanges:
    path = f"/models/{model}/predict"
    raw = {"headers": {"Content-Type": "image/png"}}
    exchanges = [
        (200, api.post(path, data=example, **raw)),
        (200, api.post(path, json={"images": [b64(example), b64(example)]})),
        (200, api.post(path + "?explain=true", data=example, **raw)),
        (400, api.post(path, **TOO_DEEP)),
        (401, api.post(path, data=example, headers={**raw["headers"], **ANONYMOUS})),
        (413, api.post(path, data=png(Image.new("L", (9000, 6000))), **raw)),  # decompression-bomb guard
        (413, api.post(path, json={"images": [b64(example)] * 17})),  # MaxImagesPerRequest is 16
        (413, api.post(path, json={"images": [b64(example)] * 5, "explain": True})),  # 4 explained per request
        (422, api.post(path, json={"images": [b64(example)], "explain": "yes"})),
        (415, api.post(path, data=b"GIF89a....", headers={"Content-Type": "image/gif"})),
        (415, api.post(path, data=b"definitely not an image", **raw)),
        (422, api.post(path, data=NOISE_PNG[:3000], **raw)),  # truncated
        (404, api.post_bare(path, data=example, **raw)),  # not published in that deployment
    ]
    api.publish_unpromoted(candidate())
    return exchanges + [(503, api.post_bare(path, data=example, **raw))]  # published, never promoted


@operation("/models/skin-lesion/predict", "post")
def predict_skin_lesion(api: Api) -> Exchanges:
    return image_route(api, "skin-lesion", ham10000.example_image("mel"), skin_lesion_candidate)


@operation("/models/chest-ct/predict", "post")
def predict_chest_ct(api: Api) -> Exchanges:
    return image_route(api, "chest-ct", chest_ct.example_image("normal"), chest_ct_candidate)


@operation("/models/{model}/uploads", "post")
def create_upload(api: Api) -> Exchanges:
    path = "/models/chest-ct/uploads"
    return [
        (201, api.post(path, json={"label": "normal", "content_type": "image/png"})),
        (201, api.post(path, json={"label": "normal", "content_type": "image/png"}, headers=api.as_user("clinician"))),
        (400, api.post(path, **NOT_JSON)),
        (401, api.post(path, json={"label": "normal", "content_type": "image/png"}, headers=ANONYMOUS)),
        (403, api.post(path, json={"label": "normal", "content_type": "image/png"}, headers=api.as_user("no-group"))),
        (404, api.post("/models/no-such-model/uploads", json={"label": "normal"})),
        (413, api.post(path, **OVER_64_KIB)),  # MaxRetrainingRequestBytes
        (415, api.post(path, json={"label": "normal", "content_type": "image/gif"})),
        (415, api.post(path, **TEXT)),
        (422, api.post(path, json={"label": "not-a-class"})),
        (422, api.post("/models/breast-cancer/uploads", json={"label": "malignant"})),  # a tabular model
        (422, api.post(path, json={"labels": "normal"})),  # request validation
    ]


@operation("/models/{model}/retrain", "post")
def start_retrain(api: Api) -> Exchanges:
    path = "/models/chest-ct/retrain"
    return [
        (202, api.retrain_job.started),
        (400, api.post(path, headers={"Content-Type": "application/json"}, data='{"reason": ')),
        (401, api.post(path, json={}, headers=ANONYMOUS)),  # API Gateway's Cognito authorizer
        (403, api.post(path, json={}, headers=api.as_user("clinician"))),  # the function: not an ml-admin
        (404, api.post("/models/no-such-model/retrain", json={})),
        (409, api.retrain_job.conflict),
        (413, api.post(path, data=OVER_64_KIB["data"], headers={**OVER_64_KIB["headers"]})),
        (415, api.post(path, data="now please", headers={"Content-Type": "text/plain"})),
        (422, api.post("/models/breast-cancer/retrain", json={})),  # a tabular model
        (422, api.post(path, json={"gate": {"min": {"Not A Metric": 1}}})),  # request validation
        (503, api.post_bare(f"/models/{UNLAUNCHABLE}/retrain", json={})),  # Batch refused the job
    ]


@operation("/models/{model}/retrain/{job_id}", "get")
def get_retrain_job(api: Api) -> Exchanges:
    job_id = api.retrain_job.started.json()["job_id"]
    return [
        (200, api.get(f"/models/chest-ct/retrain/{job_id}")),
        (401, api.get(f"/models/chest-ct/retrain/{job_id}", headers=ANONYMOUS)),
        (403, api.get(f"/models/chest-ct/retrain/{job_id}", headers=api.as_user("clinician"))),
        (404, api.get(f"/models/skin-lesion/retrain/{job_id}")),  # another model's job
        (404, api.get("/models/chest-ct/retrain/no-such-job")),
    ]


# --- the checks ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_url(stack, tmp_path_factory):
    """A second local API from the same template whose models bucket starts empty."""
    from scripts.local_runner import LocalApi
    from scripts.local_runner.cognito import moto_user_pool

    stack["s3"].create_bucket(Bucket=BARE_BUCKET)
    env_file = write_env_file(
        tmp_path_factory.mktemp("bare") / "env.json",
        stack["moto_url"],
        BARE_BUCKET,
        RETRAIN_THRESHOLDS,
        user_pool=stack["user_pool"],
    )
    # Its jobs go to a Batch queue that does not exist: the training service refuses them (503).
    env = json.loads(env_file.read_text())
    env["Parameters"] |= {"RETRAIN_BACKEND": "batch", "BATCH_JOB_QUEUE": "no-such-queue"}
    env_file.write_text(json.dumps(env))
    publish(ModelStore(BARE_BUCKET, stack["s3"]), colour_candidate(UNLAUNCHABLE))
    api = LocalApi(
        str(REPO_ROOT / "template.yaml"),
        env_vars_path=str(env_file),
        port=free_port(),
        user_pool=moto_user_pool(stack["moto_url"], stack["user_pool"].pool_id),
        warm=False,
    )
    api.start()
    try:
        yield api.url
    finally:
        api.stop()


@pytest.fixture(scope="module")
def api(stack, bare_url, impossible_gate_job) -> Api:
    return Api(stack, bare_url, impossible_gate_job)


@pytest.fixture(scope="module")
def spec(stack) -> dict:
    response = stack["http"].get(stack["url"] + "/openapi.json", timeout=30)
    assert response.status_code == 200
    return response.json()


def check_against_the_document(spec: dict, path: str, method: str, status: int, response: requests.Response):
    assert response.status_code == status, (path, method, response.text[:500])
    documented = spec["paths"][path][method]["responses"][str(status)]["content"]
    media_type = response.headers["Content-Type"].split(";", 1)[0].strip()
    assert media_type in documented, (path, method, status, media_type)
    body = response.json() if media_type == "application/json" else response.text
    # The response's schema with the document's components beside it, so "#/components/..." resolves.
    OAS31Validator({**documented[media_type]["schema"], "components": spec["components"]}).validate(body)


def test_every_documented_operation_is_checked_here(spec):
    assert set(OPERATIONS) == {(path, method) for path, methods in spec["paths"].items() for method in methods}


@pytest.mark.parametrize("path, method", sorted(OPERATIONS), ids=[f"{m.upper()} {p}" for p, m in sorted(OPERATIONS)])
def test_real_responses_match_the_documented_schema_for_every_status(spec, api, path, method):
    exchanges = OPERATIONS[path, method](api)
    # A success and every documented error status, nothing the document does not list.
    assert sorted({str(status) for status, _ in exchanges}) == sorted(spec["paths"][path][method]["responses"])
    for status, response in exchanges:
        check_against_the_document(spec, path, method, status, response)


def test_the_checks_catch_a_body_that_breaks_the_schema(spec, api):
    check_against_the_document(spec, "/models/{model}", "get", 404, api.get("/models/no-such-model"))
    broken = requests.Response()
    broken.status_code, broken.headers["Content-Type"] = 404, "application/json"
    broken._content = json.dumps({"error": {"code": "unknown_model", "message": "No model"}}).encode()
    with pytest.raises(jsonschema.ValidationError, match="'details' is a required property"):
        check_against_the_document(spec, "/models/{model}", "get", 404, broken)


def test_an_unknown_route_is_api_gateways_403_in_its_own_shape(spec, api):
    gateway_error = {"$ref": "#/components/schemas/GatewayError", "components": spec["components"]}
    for response in (api.get("/nowhere"), api.http.delete(api.url + "/models/chest-ct", timeout=30)):
        assert (response.status_code, response.json()) == (403, {"message": "Missing Authentication Token"})
        OAS31Validator(gateway_error).validate(response.json())
    assert "Missing Authentication Token" in spec["info"]["description"]
