"""The committed sample images and events are what the generators produce today."""

import base64
import json

import pytest

from tests.helpers.models import REPO_ROOT
from training.datasets import chest_ct, ham10000

EVENTS = REPO_ROOT / "events"


@pytest.mark.parametrize("model_id, data", [("skin-lesion", ham10000), ("chest-ct", chest_ct)])
def test_example_images_match_the_generator(model_id, data):
    for label in data.CLASSES:
        assert (EVENTS / "images" / f"{model_id}-{label}.png").read_bytes() == data.example_image(label), label


def test_image_events_carry_the_example_images():
    png_event = json.loads((EVENTS / "api-predict-skin-lesion-png.json").read_text())
    assert png_event["isBase64Encoded"] is True and png_event["headers"]["Content-Type"] == "image/png"
    assert base64.b64decode(png_event["body"]) == (EVENTS / "images" / "skin-lesion-mel.png").read_bytes()
    json_event = json.loads((EVENTS / "api-predict-chest-ct-json.json").read_text())
    images = [base64.b64decode(i) for i in json.loads(json_event["body"])["images"]]
    assert images == [(EVENTS / "images" / f"chest-ct-{label}.png").read_bytes() for label in chest_ct.CLASSES]
