"""The load test's requests and what makes an answer a success (scripts/load/mix.py, used by the
locustfile): a wrong status, model, count or shape is a failure."""

import pytest

from scripts.load import mix

PREDICTION = {"label": "malignant", "class_index": 0, "confidence": 0.9, "probabilities": {"malignant": 0.9}}


def answer(count=1, **changes):
    return {"model": "breast-cancer", "version": "v1", "predictions": [PREDICTION] * count, **changes}


def test_a_well_formed_answer_passes():
    assert mix.check_predictions(200, answer(3), "breast-cancer", 3) is None


@pytest.mark.parametrize(
    "status, body, problem",
    [
        (503, answer(), "status 503, expected 200"),
        (200, [answer()], "expected a JSON object"),
        (200, answer(2), "expected 1 predictions, got 2"),
        (200, answer(predictions=None), "expected 1 predictions, got None"),
        (200, answer(model="breast-cancer-lite"), "expected model breast-cancer and a version"),
        (200, answer(version=""), "expected model breast-cancer and a version"),
        (200, answer(predictions=[{"label": "benign", "probabilities": {"malignant": 1.0}}]), "without a label"),
        (200, answer(predictions=["malignant"]), "without a label"),
    ],
)
def test_a_wrong_answer_is_a_failure(status, body, problem):
    assert problem in mix.check_predictions(status, body, "breast-cancer", 1)


def test_model_list_view_and_health():
    listed = {"models": [{"model": model, "production_version": "v1"} for model in mix.MODELS]}
    assert mix.check_model_list(200, listed) is None
    assert mix.check_model_list(200, {"models": listed["models"][1:]}) == "models missing from the list: breast-cancer"
    assert mix.check_model_view(200, {"model": "chest-ct", "production_version": "v1"}, "chest-ct") is None
    unpublished = {"model": "chest-ct", "production_version": None}
    assert (
        mix.check_model_view(200, unpublished, "chest-ct")
        == "expected chest-ct with a production version, got 'chest-ct' None"
    )
    assert "status 404" in mix.check_model_view(404, {"error": {}}, "chest-ct")
    assert mix.check_health(200, {"status": "ok"}) is None
    assert mix.check_health(200, {"status": "starting"}) == "expected status ok, got 'starting'"


def test_the_bodies_are_the_projects_examples():
    row = mix.malignant_row()
    assert len(row) == 30 and row[:2] == [17.99, 10.38]
    rows = mix.batch(row)
    assert len(rows) == mix.BATCH_ROWS and len({tuple(r) for r in rows}) == mix.BATCH_ROWS
    assert rows[0] == [round(v * 0.85, 6) for v in row] and rows[-1] == [round(v * 1.15, 6) for v in row]
    for model, classes in (("skin-lesion", 7), ("chest-ct", 2)):
        images = mix.example_images(model)
        assert len(images) == classes and all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    with pytest.raises(FileNotFoundError):
        mix.example_images("breast-cancer")


def test_extra_headers_from_load_headers():
    assert mix.extra_headers({}) == {}
    assert mix.extra_headers({"LOAD_HEADERS": '{"Authorization": "Bearer t"}'}) == {"Authorization": "Bearer t"}
    with pytest.raises(ValueError, match="not JSON"):
        mix.extra_headers({"LOAD_HEADERS": "Authorization: x"})
    with pytest.raises(ValueError, match="object of strings"):
        mix.extra_headers({"LOAD_HEADERS": '{"X-Count": 1}'})
