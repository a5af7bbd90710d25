"""The image function's route, POST /models/{model}/predict, as a Powertools resolver: it answers the
requests the fast path does not (a refused image, an unknown model) and documents the route.

Imported by app.resolver() on the first such request, with the handler module as `handler`
(med_classifier.api.routes_loader). NOT FOR CLINICAL USE.
"""

from __future__ import annotations

from types import ModuleType
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Path

from med_classifier import NOT_FOR_CLINICAL_USE
from med_classifier.api import fast_path
from med_classifier.api.errors import NOT_SIGNED_IN, error_doc, register_error_handlers
from med_classifier.api.image_requests import image_request_body
from med_classifier.api.openapi import SIGN_IN_REQUIRED
from med_classifier.api.request_guard import DEFAULT_MAX_JSON_DEPTH
from med_classifier.api.schemas import ExplainQuery, PredictResponse, predict_response

# The handler module (app.py), given by med_classifier.api.routes_loader.load_routes before this
# module runs: a KeyError here means it was imported some other way.
handler: ModuleType = globals()["handler"]

app = APIGatewayRestResolver(enable_validation=True, serializer=fast_path.json_text)
register_error_handlers(app, handler.logger)


@app.post(
    "/models/<model>/predict",
    summary="Classify one or many images",
    description="One image as the raw body (Content-Type image/jpeg or image/png), or one or many as JSON "
    '{"images": ["<base64>", ...]}. ' + NOT_FOR_CLINICAL_USE,
    tags=["Predict"],
    # The body is read by images_from_body (raw or JSON, limits first), not by Powertools: documented here.
    openapi_extensions={"requestBody": image_request_body()},
    security=SIGN_IN_REQUIRED,
    responses={
        200: {"description": "One prediction per image, in request order"},
        401: NOT_SIGNED_IN,
        400: error_doc(
            f"A JSON body that is not UTF-8, nests deeper than {DEFAULT_MAX_JSON_DEPTH} levels, or has an "
            "integer of more digits than Python reads (4300)"
        ),
        404: error_doc("The model is not published"),
        413: error_doc(
            "A body over MaxImageRequestBytes, an image over MaxImageBytes (the message points to the upload "
            "route), more than MaxImagesPerRequest images, an image that decodes to more than MaxImagePixels "
            "pixels (decompression-bomb guard), more than MaxRequestPixels decoded pixels in all, or a file of "
            "more chunks, segments or scans than any encoder writes (in a batch, the message names images[i]), "
            "or more images than one request may have explained (4)"
        ),
        415: error_doc(
            "Not a JPEG or PNG image, no Content-Type, or a media type other than image/jpeg, image/png, "
            "application/json"
        ),
        422: error_doc(
            "A truncated or corrupt image (in a batch, the message names images[i]), malformed JSON, or an "
            "explain that is not a boolean"
        ),
        503: error_doc("The model has no loadable version"),
    },
)
def predict(
    model: Annotated[str, Path(description="Model id, e.g. skin-lesion")], explain: ExplainQuery = False
) -> PredictResponse:
    return predict_response(
        handler.predicted(model, app.current_event.raw_event, explain=explain), NOT_FOR_CLINICAL_USE
    )
