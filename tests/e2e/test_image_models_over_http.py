"""All four models over HTTP through the local stack: registry, the known example of
each class, images as raw bodies and base64 JSON, and bad images."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from training.datasets import chest_ct, ham10000

IMAGE_MODELS = {"skin-lesion": ham10000, "chest-ct": chest_ct}
ALL_MODELS = ["breast-cancer", "breast-cancer-lite", "chest-ct", "skin-lesion"]


def test_registry_lists_all_four_models_with_versions_and_metrics(stack):
    models = {m["model"]: m for m in stack["http"].get(stack["url"] + "/models", timeout=30).json()["models"]}
    assert sorted(models) == ALL_MODELS
    for model_id, entry in models.items():
        assert entry["production_version"], model_id
        assert entry["metrics"]["test_accuracy"] > 0.5, model_id
    skin = stack["http"].get(stack["url"] + "/models/skin-lesion", timeout=30).json()
    assert skin["input"]["kind"] == "image" and skin["classes"] == ham10000.CLASSES
    assert skin["converter"].get("torch.onnx") and skin["training_data"]["synthetic"] is True


@pytest.mark.parametrize("model_id", sorted(IMAGE_MODELS))
def test_known_example_of_each_class_comes_back_with_its_label(stack, model_id):
    data = IMAGE_MODELS[model_id]
    for label in data.CLASSES:
        response = stack["http"].post(
            f"{stack['url']}/models/{model_id}/predict",
            data=data.example_image(label),
            headers={"Content-Type": "image/png"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        (prediction,) = response.json()["predictions"]
        assert prediction["label"] == label, (model_id, label, prediction["probabilities"])
        assert set(prediction["probabilities"]) == set(data.CLASSES)


@pytest.mark.parametrize("model_id", sorted(IMAGE_MODELS))
def test_json_batch_of_base64_images(stack, model_id):
    data = IMAGE_MODELS[model_id]
    labels = list(reversed(data.CLASSES))
    images = [base64.b64encode(data.example_image(label)).decode() for label in labels]
    response = stack["http"].post(f"{stack['url']}/models/{model_id}/predict", json={"images": images}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["label"] for p in body["predictions"]] == labels and body["model"] == model_id


def test_breast_cancer_lite_takes_four_raw_features(stack):
    lite = stack["http"].get(stack["url"] + "/models/breast-cancer-lite", timeout=30).json()
    names = lite["input"]["feature_names"]
    assert names == ["mean radius", "mean texture", "mean smoothness", "mean perimeter"]
    malignant = dict(zip(names, [17.99, 10.38, 0.1184, 122.8]))  # Wisconsin row 0 (malignant)
    benign = dict(zip(names, [13.54, 14.36, 0.09779, 87.46]))  # Wisconsin row 19 (benign)
    response = stack["http"].post(
        stack["url"] + "/models/breast-cancer-lite/predict", json={"instances": [malignant, benign]}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == ["malignant", "benign"]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, body, content_type, status, message",
    [
        ("text", b"definitely not an image", "image/png", 415, "Not a JPEG or PNG image."),
        (
            "truncated",
            _png(Image.fromarray(np.random.default_rng(3).integers(0, 255, (96, 96, 3), dtype=np.uint8)))[:3000],
            "image/png",
            422,
            "The image is truncated or corrupt: ",
        ),
        (
            "decompression bomb",
            _png(Image.new("L", (9000, 6000))),
            "image/png",
            413,
            "The image is 9000x6000 pixels; at most 4194304 pixels are accepted (decompression-bomb guard). "
            "Downscale it first.",
        ),
        (
            "wrong media type",
            b"GIF89a....",
            "image/gif",
            415,
            "Content-Type 'image/gif' is not accepted here: send image/jpeg or image/png, or application/json "
            'with {"images": ["<base64>", ...]}.',
        ),
    ],
)
def test_bad_images_over_http_are_4xx_and_the_function_keeps_serving(stack, name, body, content_type, status, message):
    url = f"{stack['url']}/models/skin-lesion/predict"
    response = stack["http"].post(url, data=body, headers={"Content-Type": content_type}, timeout=60)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"].startswith(message), response.text
    ok = stack["http"].post(url, data=ham10000.example_image("mel"), headers={"Content-Type": "image/png"}, timeout=60)
    assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] == "mel"


def test_openapi_documents_image_bodies(stack):
    spec = stack["http"].get(stack["url"] + "/openapi.json", timeout=30).json()
    for model_id in IMAGE_MODELS:  # the literal routes API Gateway sends to the image function
        content = spec["paths"][f"/models/{model_id}/predict"]["post"]["requestBody"]["content"]
        assert set(content) == {"application/json", "image/png", "image/jpeg"}
        assert content["image/png"]["schema"] == {"type": "string", "format": "binary"}
        assert content["application/json"]["schema"]["required"] == ["images"]
    # {model} goes to the tabular function, which takes JSON rows only.
    tabular = spec["paths"]["/models/{model}/predict"]["post"]["requestBody"]["content"]
    assert list(tabular) == ["application/json"]
