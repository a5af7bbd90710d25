"""Image predict function: POST /models/{model}/predict for image models.

API Gateway sends each image model's literal route here (template.yaml: /models/skin-lesion/predict,
/models/chest-ct/predict; it prefers literal paths over {model}), everything else to the predict
function. Its own function (memory, timeout, cold start) so the tabular function never loads
an image model and vice versa. The handler checks the raw event (request guard) and predicts
(the fast path: med_classifier.api.fast_path); a request it refuses goes to the Powertools resolver
in routes.py, imported on the first such request. Thin adapter: body -> image files ->
med_classifier. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import base64
import binascii
import functools
import sys
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from med_classifier import NOT_FOR_CLINICAL_USE, services, snapstart
from med_classifier.api import fast_path
from med_classifier.api.image_requests import MEDIA_TYPE_HINT, MEDIA_TYPES, images_from_body
from med_classifier.api.request_guard import BodyPolicy, refusal
from med_classifier.api.response_values import predict_fields
from med_classifier.api.routes_loader import load_routes
from med_classifier.domain.errors import InvalidInput
from med_classifier.domain.preprocessing import PixelLimits
from med_classifier.domain.serving import ModelCache, PredictionResult, predict_images
from med_classifier.settings import ImagePredictSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    from med_classifier.domain.capture import CaptureBuffer

logger = Logger()
metrics = Metrics()


@functools.cache
def settings() -> ImagePredictSettings:
    return ImagePredictSettings.from_environ()


@functools.cache
def body_policy() -> BodyPolicy:
    return BodyPolicy(MEDIA_TYPES, MEDIA_TYPE_HINT, settings().max_request_bytes)


@functools.cache
def model_cache() -> ModelCache:
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    return services.model_cache(settings())


def body_bytes(event: dict) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):  # binary media types (image/jpeg, image/png) arrive base64-encoded
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("The request body could not be decoded.") from None
    return body.encode("utf-8", "surrogatepass")  # a raw image sent as text: the decoder refuses it


def predicted(model: str, event: dict, *, explain: bool = False) -> PredictionResult:
    """The route's and the fast path's prediction, with its metrics (``explain``: the query parameter;
    a JSON body can ask too)."""
    content_type = fast_path.header(event, "content-type")
    request = images_from_body(model, content_type, body_bytes(event), settings().image_limits)
    limits = PixelLimits(settings().max_image_pixels, settings().max_request_pixels)
    result = predict_images(model_cache(), model, request.images, limits, explain=explain or request.explain)
    metrics.add_dimension(name="model", value=model)
    metrics.add_metric(name="PredictedImages", unit=MetricUnit.Count, value=len(result.predictions))
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=result.inference_ms)
    if (buffer := capture_buffer()) is not None:
        buffer.add(model, result)  # drift capture: never raises (domain/capture.py)
    return result


@functools.cache
def capture_buffer() -> CaptureBuffer | None:
    """Drift capture (README, "Drift monitoring"): None when the function has no monitoring bucket."""
    return services.capture_buffer(settings())


def fast_answer(event: dict) -> dict | None:
    """A request answered without the resolver (med_classifier.api.fast_path): the route reads its
    body itself, so every request can take this path but one with ?explain (the route reads it); an error
    goes to the resolver."""
    model = fast_path.predict_model(event)
    if model is None or fast_path.asks_explanation(event):
        return None
    return fast_path.answer(lambda: predict_fields(predicted(model, event), NOT_FOR_CLINICAL_USE))


@functools.cache
def resolver() -> APIGatewayRestResolver:
    """The route (routes.py), imported on the first request the fast path does not answer."""
    return load_routes(sys.modules[__name__]).app


def prepared() -> None:
    """What the first requests build, built into the SnapStart snapshot (med_classifier.snapstart)."""
    settings(), body_policy(), resolver()


snapstart.register(logger, prepared, model_cache, "image")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context) -> dict:
    # Media type, size and JSON shape are checked on the raw event, before anything parses the body.
    return refusal(event, body_policy, logger) or fast_answer(event) or resolver().resolve(event, context)
