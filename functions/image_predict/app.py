"""Image predict function: POST /models/{model}/predict for image models.

API Gateway sends each image model's literal route here (template.yaml: /models/skin-lesion/predict,
/models/chest-ct/predict; it prefers literal paths over {model}), everything else to the predict
function. Its own function (memory, timeout, cold start) so the tabular function never loads
an image model and vice versa. Thin adapter: body -> image files -> med_classifier.
NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Annotated

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.metrics import MetricUnit

from med_classifier import NOT_FOR_CLINICAL_USE, services
from med_classifier.api.errors import error_doc, register_error_handlers
from med_classifier.api.image_requests import MEDIA_TYPE_HINT, MEDIA_TYPES, image_request_body, images_from_body
from med_classifier.api.request_guard import DEFAULT_MAX_JSON_DEPTH, BodyPolicy, refusal
from med_classifier.api.schemas import PredictResponse, predict_response
from med_classifier.domain.errors import InvalidInput
from med_classifier.domain.preprocessing import PixelLimits
from med_classifier.domain.serving import ModelCache, predict_images
from med_classifier.settings import ImagePredictSettings

logger = Logger()
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
register_error_handlers(app, logger)


@functools.cache
def settings() -> ImagePredictSettings:
    return ImagePredictSettings.from_environ()


@functools.cache
def body_policy() -> BodyPolicy:
    return BodyPolicy(MEDIA_TYPES, MEDIA_TYPE_HINT, settings().max_request_bytes)


@functools.cache
def _model_cache() -> ModelCache:
    # Built on first use, not at import: boto3 and clients cost cold-start time.
    return services.model_cache(settings())


def _body_bytes() -> bytes:
    event = app.current_event
    body = event.body or ""
    if event.is_base64_encoded:  # binary media types (image/jpeg, image/png) arrive base64-encoded
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("The request body could not be decoded.") from None
    return body.encode("utf-8", "surrogatepass")  # a raw image sent as text: the decoder refuses it


@app.post(
    "/models/<model>/predict",
    summary="Classify one or many images",
    description="One image as the raw body (Content-Type image/jpeg or image/png), or one or many as JSON "
    '{"images": ["<base64>", ...]}. ' + NOT_FOR_CLINICAL_USE,
    tags=["Predict"],
    # The body is read by images_from_body (raw or JSON, limits first), not by Powertools: documented here.
    openapi_extensions={"requestBody": image_request_body()},
    responses={
        200: {"description": "One prediction per image, in request order"},
        400: error_doc(
            f"A JSON body that is not UTF-8, nests deeper than {DEFAULT_MAX_JSON_DEPTH} levels, or has an "
            "integer of more digits than Python reads (4300)"
        ),
        404: error_doc("The model is not published"),
        413: error_doc(
            "A body over MaxImageRequestBytes, an image over MaxImageBytes (the message points to the upload "
            "route), more than MaxImagesPerRequest images, an image that decodes to more than MaxImagePixels "
            "pixels (decompression-bomb guard), more than MaxRequestPixels decoded pixels in all, or a file of "
            "more chunks, segments or scans than any encoder writes (in a batch, the message names images[i])"
        ),
        415: error_doc(
            "Not a JPEG or PNG image, no Content-Type, or a media type other than image/jpeg, image/png, "
            "application/json"
        ),
        422: error_doc("A truncated or corrupt image (in a batch, the message names images[i]), or malformed JSON"),
        503: error_doc("The model has no loadable version"),
    },
)
def predict(model: Annotated[str, Path(description="Model id, e.g. skin-lesion")]) -> PredictResponse:
    images = images_from_body(
        model, app.current_event.headers.get("content-type"), _body_bytes(), settings().image_limits
    )
    limits = PixelLimits(settings().max_image_pixels, settings().max_request_pixels)
    result = predict_images(_model_cache(), model, images, limits)
    metrics.add_dimension(name="model", value=model)
    metrics.add_metric(name="PredictedImages", unit=MetricUnit.Count, value=len(result.predictions))
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=result.inference_ms)
    return predict_response(result, NOT_FOR_CLINICAL_USE)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context) -> dict:
    # Media type, size and JSON shape are checked on the raw event, before anything parses the body.
    return refusal(event, body_policy, logger) or app.resolve(event, context)
