"""The PreTraffic hook's release check: golden examples through a new function version, compared with
what the model answered when it was published (med_classifier.domain.golden, .release_check), and the
hook's adapters (Lambda Invoke, CodeDeploy) on botocore's Stubber, which checks each call against the
service's API model."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from PIL import Image

from med_classifier.adapters.release_targets import CodeDeployReporter, LambdaPredictor
from med_classifier.api.release_events import HOOK_CLAIMS, predict_event
from med_classifier.domain import golden
from med_classifier.domain.golden import PROBABILITY_TOLERANCE, golden_inputs, request_body
from med_classifier.domain.manifest import GoldenExample, ImageInput, ProductionPointer, TabularInput
from med_classifier.domain.release_check import ReleaseCallFailed, check_release
from tests.helpers.models import breast_cancer_candidate, manifest_for

VERSION = "20261201T000000Z-0000000a"
ROW = [1.0, 2.0]


def example(label="malignant", p=0.9, **inputs) -> GoldenExample:
    other = "benign" if label == "malignant" else "malignant"
    return GoldenExample(label=label, probabilities={label: p, other: round(1 - p, 6)}, **({"instance": ROW} | inputs))


def served(label="malignant", p=0.9) -> dict:
    other = "benign" if label == "malignant" else "malignant"
    return {"label": label, "probabilities": {label: p, other: round(1 - p, 6)}}


class Registry:
    """What check_release reads of the model store: model ids, pointers, manifests."""

    def __init__(self, manifests: dict):
        self.manifests = manifests  # model id -> manifest, or None: no production pointer

    def list_model_ids(self) -> list[str]:
        return sorted(self.manifests)

    def read_pointer(self, model_id: str):
        manifest = self.manifests[model_id]
        if manifest is None:
            return None
        return ProductionPointer(version=manifest.version, sha256="0" * 64, promoted_at=datetime.now(UTC))

    def read_manifest(self, model_id: str, version: str):
        return self.manifests[model_id]


class Predictor:
    def __init__(self, answers=None, error: str | None = None, target: str = "PredictFunction:7"):
        self.answers, self.error, self.target, self.calls = answers, error, target, []

    def predict(self, model_id, examples):
        self.calls.append((model_id, examples))
        if self.error:
            raise ReleaseCallFailed(self.error)
        return self.answers


@pytest.fixture(scope="module")
def manifest():
    return manifest_for(breast_cancer_candidate()).model_copy(update={"version": VERSION})


def with_golden(manifest, examples):
    return manifest.model_copy(update={"golden_examples": examples})


def test_a_version_answering_every_golden_example_the_same_passes(manifest):
    predictor = Predictor([served(), served()])
    report = check_release(
        Registry({"breast-cancer": with_golden(manifest, [example(), example()])}), {"tabular": predictor}
    )
    assert report.status == "Succeeded"
    assert report.checked == [f"breast-cancer {VERSION} on PredictFunction:7: 2 golden examples answered the same"]
    assert report.failures == [] and report.unchecked == []
    assert predictor.calls == [("breast-cancer", [example(), example()])]


def test_another_label_fails_the_release_with_the_model_version_and_example(manifest):
    report = check_release(
        Registry({"breast-cancer": with_golden(manifest, [example(), example()])}),
        {"tabular": Predictor([served(), served("benign", 0.9)])},
    )
    assert report.status == "Failed"
    assert report.failures == [
        f"breast-cancer {VERSION} on PredictFunction:7: golden example 1: label 'benign' instead of 'malignant'",
        f"breast-cancer {VERSION} on PredictFunction:7: golden example 1: probabilities differ by up to 8.00e-01 "
        "(tolerance 1e-03)",
    ]


def test_probabilities_beyond_the_tolerance_fail_even_with_the_same_label(manifest):
    drifted = served(p=0.9 + 2 * PROBABILITY_TOLERANCE)
    report = check_release(Registry({"m": with_golden(manifest, [example()])}), {"tabular": Predictor([drifted])})
    assert report.failures == [
        f"m {VERSION} on PredictFunction:7: golden example 0: probabilities differ by up to 2.00e-03 (tolerance 1e-03)"
    ]


def test_probabilities_within_the_tolerance_pass(manifest):
    close = served(p=0.9 + PROBABILITY_TOLERANCE / 2)
    report = check_release(Registry({"m": with_golden(manifest, [example()])}), {"tabular": Predictor([close])})
    assert report.status == "Succeeded"


def test_a_label_flip_between_two_classes_the_published_answer_could_not_tell_apart_passes(manifest):
    tie = GoldenExample(instance=ROW, label="malignant", probabilities={"malignant": 0.5002, "benign": 0.4998})
    flipped = {"label": "benign", "probabilities": {"malignant": 0.4998, "benign": 0.5002}}
    report = check_release(Registry({"m": with_golden(manifest, [tie])}), {"tabular": Predictor([flipped])})
    assert report.status == "Succeeded"


def test_other_classes_fail_the_release(manifest):
    answer = {"label": "a", "probabilities": {"a": 1.0, "b": 0.0}}
    report = check_release(Registry({"m": with_golden(manifest, [example()])}), {"tabular": Predictor([answer])})
    assert report.failures == [
        f"m {VERSION} on PredictFunction:7: golden example 0: classes ['a', 'b'] instead of ['benign', 'malignant']"
    ]


def test_fewer_predictions_than_examples_fail_the_release(manifest):
    report = check_release(
        Registry({"m": with_golden(manifest, [example(), example()])}), {"tabular": Predictor([served()])}
    )
    assert report.failures == ["m on PredictFunction:7: 1 predictions for 2 golden examples"]


def test_a_version_that_does_not_answer_fails_the_release_in_its_words(manifest):
    report = check_release(
        Registry({"m": with_golden(manifest, [example()])}), {"tabular": Predictor(error="answered 503 instead")}
    )
    assert report.failures == ["m on PredictFunction:7: answered 503 instead"]


def test_models_without_golden_examples_or_production_or_of_another_kind_are_not_checked(manifest):
    image = manifest.model_copy(
        update={"input": ImageInput(input_name="x", height=8, width=8, mean=[0.0] * 3, std=[1.0] * 3)}
    )
    predictor = Predictor([served()])
    report = check_release(
        Registry({"old": with_golden(manifest, []), "retired": None, "image": with_golden(image, [example()])}),
        {"tabular": predictor},
    )
    assert report.status == "Succeeded"
    assert report.unchecked == [f"old {VERSION}: its manifest has no golden examples"]
    assert predictor.calls == [] and report.checked == []


def test_golden_inputs_are_the_example_row_and_that_row_lower_and_higher():
    spec = TabularInput(feature_names=["a", "b"], input_name="x", example=[10.0, 20.0])
    assert golden_inputs(spec) == [[10.0, 20.0], [9.0, 18.0], [11.0, 22.0]]
    assert golden_inputs(TabularInput(feature_names=["a"], input_name="x")) == [[1.0], [0.9], [1.1]]


@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (1, "L")])
def test_golden_images_are_fixed_small_pngs_of_the_models_channels(channels, mode):
    spec = ImageInput(
        input_name="x", height=96, width=96, channels=channels, mean=[0.0] * channels, std=[1.0] * channels
    )
    images = golden_inputs(spec)
    assert images == golden_inputs(spec)  # generated the same every time, nothing downloaded
    assert len(images) == 2 and images[0] != images[1]
    for data in images:
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.mode, image.size) == ("PNG", mode, (golden.GOLDEN_IMAGE_SIDE,) * 2)


def test_a_published_manifest_records_what_serving_answers_for_its_golden_inputs():
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    from med_classifier.domain.inference import OnnxClassifier

    answers = golden.served_predictions(OnnxClassifier(manifest, candidate.onnx), golden_inputs(manifest.input))
    assert [(g.instance, g.label, g.probabilities) for g in manifest.golden_examples] == [
        (row, a["label"], a["probabilities"]) for row, a in zip(golden_inputs(manifest.input), answers, strict=True)
    ]
    # They survive the manifest's JSON, as the hook reads it from S3.
    assert type(manifest).model_validate_json(manifest.model_dump_json()).golden_examples == manifest.golden_examples


def test_the_request_sends_rows_or_images_as_the_predict_routes_take_them():
    assert request_body([example(), example()]) == {"instances": [ROW, ROW]}
    png = base64.b64encode(b"png").decode()
    assert request_body([example(instance=None, image_png=png)]) == {"images": [png]}


def test_the_hooks_event_is_a_clinicians_post_to_the_models_predict_route():
    tabular = predict_event("breast-cancer", [example()])
    assert (tabular["httpMethod"], tabular["path"], tabular["resource"]) == (
        "POST",
        "/models/breast-cancer/predict",
        "/models/{model}/predict",
    )
    assert tabular["requestContext"]["authorizer"]["claims"] == HOOK_CLAIMS
    assert HOOK_CLAIMS["cognito:groups"] == "clinicians"
    assert json.loads(tabular["body"]) == {"instances": [ROW]}
    image = predict_event("chest-ct", [example(instance=None, image_png="aGk=")])
    assert image["resource"] == image["requestContext"]["resourcePath"] == "/models/chest-ct/predict"


def lambda_answer(payload, function_error: str | None = None) -> dict:
    body = json.dumps(payload).encode()
    answer = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}
    return answer | ({"FunctionError": function_error} if function_error else {})


def stubbed_predictor(answer: dict) -> LambdaPredictor:
    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    stubber = Stubber(client)
    stubber.add_response(
        "invoke",
        answer,
        {"FunctionName": "arn:aws:lambda:us-east-1:1:function:f:7", "Payload": ANY},
    )
    stubber.activate()
    return LambdaPredictor("arn:aws:lambda:us-east-1:1:function:f:7", predict_event, client=client)


def test_the_lambda_predictor_invokes_the_version_and_returns_its_predictions():
    answer = {"statusCode": 200, "body": json.dumps({"predictions": [served()]})}
    assert stubbed_predictor(lambda_answer(answer)).predict("m", [example()]) == [served()]


@pytest.mark.parametrize(
    "answer, message",
    [
        (
            lambda_answer({"errorType": "ImportError", "errorMessage": "no module x"}, "Unhandled"),
            "the function failed (ImportError: no module x)",
        ),
        (
            lambda_answer(
                {"statusCode": 503, "body": json.dumps({"error": {"message": "no model"}, "message": "gone"})}
            ),
            "answered 503 instead of predictions (gone)",
        ),
        (lambda_answer({"statusCode": 200, "body": "not json"}), "answered 200 instead of predictions (no message)"),
        (lambda_answer({"statusCode": 200, "body": "{}"}), "answered 200 instead of predictions (no message)"),
    ],
)
def test_the_lambda_predictor_reports_a_version_that_does_not_answer(answer, message):
    with pytest.raises(ReleaseCallFailed) as raised:
        stubbed_predictor(answer).predict("m", [example()])
    assert str(raised.value) == message


def test_the_reporter_puts_the_hooks_status_on_its_deployment():
    client = boto3.client("codedeploy", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stubber:
        stubber.add_response(
            "put_lifecycle_event_hook_execution_status",
            {"lifecycleEventHookExecutionId": "e-1"},
            {"deploymentId": "d-1", "lifecycleEventHookExecutionId": "e-1", "status": "Failed"},
        )
        CodeDeployReporter(client=client).report("d-1", "e-1", "Failed")
        stubber.assert_no_pending_responses()


class Reporter:
    def __init__(self):
        self.reports = []

    def report(self, deployment_id, execution_id, status):
        self.reports.append((deployment_id, execution_id, status))


@pytest.fixture
def hook(monkeypatch):
    from med_classifier import services
    from tests.helpers.models import load_function_module

    variables = {"MODELS_BUCKET": "b", "NEW_PREDICT_VERSION": "p:2", "NEW_IMAGE_PREDICT_VERSION": "i:3"}
    for name, value in {**variables, "POWERTOOLS_METRICS_NAMESPACE": "Test"}.items():
        monkeypatch.setenv(name, value)
    reporter = Reporter()
    monkeypatch.setattr(services, "deployment_reporter", lambda settings: reporter)
    module = load_function_module("pre_traffic_hook")
    return module, reporter


def test_the_hook_refuses_an_event_that_is_not_a_lifecycle_hooks(hook):
    from tests.helpers.models import LambdaContext

    module, reporter = hook
    with pytest.raises(ValueError) as raised:
        module.lambda_handler({"DeploymentId": "d-1"}, LambdaContext("PreTrafficHookFunction"))
    assert str(raised.value) == (
        "Not a CodeDeploy lifecycle hook event: DeploymentId and LifecycleEventHookExecutionId are needed."
    )
    assert reporter.reports == []


def test_a_release_check_that_cannot_run_fails_the_deployment_instead_of_leaving_it_waiting(hook, monkeypatch):
    from med_classifier import services
    from tests.helpers.models import LambdaContext

    module, reporter = hook

    def unreachable(settings):
        raise ConnectionError("S3 unreachable")

    monkeypatch.setattr(services, "model_store", unreachable)
    event = {"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "e-1"}
    result = module.lambda_handler(event, LambdaContext("PreTrafficHookFunction"))
    assert result == {"status": "Failed", "checked": [], "failures": [module.COULD_NOT_RUN], "unchecked": []}
    assert reporter.reports == [("d-1", "e-1", "Failed")]


def test_the_hook_calls_each_kinds_new_version():
    from med_classifier import services
    from med_classifier.settings import PreTrafficHookSettings

    settings = PreTrafficHookSettings.from_environ(
        {"MODELS_BUCKET": "b", "NEW_PREDICT_VERSION": "arn:p:2", "NEW_IMAGE_PREDICT_VERSION": "arn:i:3"}
    )
    predictors = services.golden_predictors(settings)
    assert {kind: p.target for kind, p in predictors.items()} == {"tabular": "arn:p:2", "image": "arn:i:3"}
    local = PreTrafficHookSettings.from_environ(
        {
            "MODELS_BUCKET": "b",
            "NEW_PREDICT_VERSION": "p",
            "NEW_IMAGE_PREDICT_VERSION": "i",
            "LAMBDA_ENDPOINT_URL": "http://x",
        }
    )
    assert {p.endpoint_url for p in services.golden_predictors(local).values()} == {"http://x"}
