"""What `make load` sends and what makes each answer a success (the locustfile's requests, without
Locust: standard library only, so the unit tests import it from the project's .venv).

Every request reads; none uploads, retrains or writes anything. The bodies are the project's own
examples: the public malignant Wisconsin row of events/api-predict-breast-cancer.json (a 100-row
batch scales it row by row), the four breast-cancer-lite features of the README's example, and
the PNGs of events/images/. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
TABULAR_MODELS = ("breast-cancer", "breast-cancer-lite")
IMAGE_MODELS = ("skin-lesion", "chest-ct")
MODELS = TABULAR_MODELS + IMAGE_MODELS
BATCH_ROWS = 100  # the e2e stack's MAX_PREDICT_ROWS; make run and AWS allow 1000

# Request names: the route as API Gateway knows it, and which variant of it (Locust adds the method).
ONE_ROW = "/models/{model}/predict [breast-cancer, 1 row]"
BATCH = f"/models/{{model}}/predict [breast-cancer, {BATCH_ROWS} rows]"
LITE = "/models/{model}/predict [breast-cancer-lite, 1 row]"
SKIN_LESION = "/models/skin-lesion/predict [image/png]"
CHEST_CT = "/models/chest-ct/predict [image/png]"
MODEL_VIEW = "/models/{model}"
MODEL_LIST = "/models"
HEALTH = "/health"

# Wisconsin row 0 (malignant), the README's breast-cancer-lite example.
LITE_ROW = {"mean radius": 17.99, "mean texture": 10.38, "mean smoothness": 0.1184, "mean perimeter": 122.8}


def malignant_row() -> list[float]:
    """The 30 features of the sample event's one row."""
    body = json.loads(json.loads((EVENTS / "api-predict-breast-cancer.json").read_text())["body"])
    (row,) = body["instances"]
    return row


def batch(row: list[float], rows: int = BATCH_ROWS) -> list[list[float]]:
    """`rows` rows: the row scaled by 0.85 to 1.15, so no two are alike."""
    return [[round(value * (0.85 + 0.3 * i / max(rows - 1, 1)), 6) for value in row] for i in range(rows)]


def example_images(model: str) -> list[bytes]:
    """Every example PNG of an image model (one per class of the synthetic data)."""
    paths = sorted((EVENTS / "images").glob(f"{model}-*.png"))
    if not paths:
        raise FileNotFoundError(f"no example image of {model} in {EVENTS / 'images'}")
    return [path.read_bytes() for path in paths]


def extra_headers(environ: Mapping[str, str]) -> dict[str, str]:
    """LOAD_HEADERS, a JSON object of header names to values, sent with every request (e.g. a token)."""
    raw = environ.get("LOAD_HEADERS", "").strip()
    if not raw:
        return {}
    try:
        headers = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"LOAD_HEADERS is not JSON: {exc}") from None
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError('LOAD_HEADERS must be a JSON object of strings, e.g. {"Authorization": "Bearer ..."}')
    return headers


def _unexpected(status: int, body: Any, expected_status: int = 200) -> str | None:
    if status != expected_status:
        return f"status {status}, expected {expected_status}: {json.dumps(body)[:300]}"
    if not isinstance(body, dict):
        return f"expected a JSON object, got {json.dumps(body)[:300]}"
    return None


def check_predictions(status: int, body: Any, model: str, count: int) -> str | None:
    """None when the answer is `count` predictions of `model`, else what is wrong with it."""
    if problem := _unexpected(status, body):
        return problem
    if body.get("model") != model or not body.get("version"):
        return f"expected model {model} and a version, got {body.get('model')!r} {body.get('version')!r}"
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != count:
        got = len(predictions) if isinstance(predictions, list) else repr(predictions)[:100]
        return f"expected {count} predictions, got {got}"
    for prediction in predictions:
        if not (
            isinstance(prediction, dict)
            and isinstance(prediction.get("label"), str)
            and isinstance(prediction.get("probabilities"), dict)
            and prediction["label"] in prediction["probabilities"]
        ):
            return f"a prediction without a label among its probabilities: {json.dumps(prediction)[:300]}"
    return None


def check_model_list(status: int, body: Any) -> str | None:
    if problem := _unexpected(status, body):
        return problem
    listed = {entry.get("model") for entry in body.get("models") or [] if isinstance(entry, dict)}
    missing = sorted(set(MODELS) - listed)
    return f"models missing from the list: {', '.join(missing)}" if missing else None


def check_model_view(status: int, body: Any, model: str) -> str | None:
    if problem := _unexpected(status, body):
        return problem
    got, version = body.get("model"), body.get("production_version")
    return None if got == model and version else f"expected {model} with a production version, got {got!r} {version!r}"


def check_health(status: int, body: Any) -> str | None:
    if problem := _unexpected(status, body):
        return problem
    return None if body.get("status") == "ok" else f"expected status ok, got {body.get('status')!r}"
