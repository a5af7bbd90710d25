"""Image predict function: POST /models/{model}/predict for image models.

Its own function (memory, timeout, cold start) so the tabular function never loads
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
from med_classifier.api.errors import register_error_handlers
from med_classifier.api.image_requests import images_from_body
from med_classifier.api.schemas import PredictResponse
from med_classifier.domain.errors import InvalidInput
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
    return body.encode("utf-8")


@app.post("/models/<model>/predict", summary="Classify one or many images")
def predict(model: Annotated[str, Path(description="Model id, e.g. skin-lesion")]) -> PredictResponse:
    images = images_from_body(
        model, app.current_event.headers.get("content-type"), _body_bytes(), settings().image_limits
    )
    result = predict_images(_model_cache(), model, images, pixel_limit=settings().max_image_pixels)
    metrics.add_dimension(name="model", value=model)
    metrics.add_metric(name="PredictedImages", unit=MetricUnit.Count, value=len(result.predictions))
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=result.inference_ms)
    return PredictResponse.from_result(result, NOT_FOR_CLINICAL_USE)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context) -> dict:
    return app.resolve(event, context)
