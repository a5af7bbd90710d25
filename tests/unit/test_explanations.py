"""Explanations (domain/explanations.py): the linear model's exact feature contributions, the occlusion
map's shape and meaning, the heatmap PNG, and the per-request limits. NOT FOR CLINICAL USE."""

import base64
import functools
import io

import numpy as np
import pytest
from PIL import Image

from med_classifier.domain import explanations
from med_classifier.domain.errors import InvalidInput, PayloadTooLarge
from med_classifier.domain.explanations import (
    GRID,
    HEATMAP_SIZE,
    check_budget,
    feature_contributions,
    heatmap_png,
    occlusion_maps,
)
from med_classifier.domain.inference import OnnxClassifier
from med_classifier.domain.manifest import Calibration
from med_classifier.domain.preprocessing import tensor_from_bytes
from tests.helpers.image_models import colour_candidate
from tests.helpers.models import breast_cancer_candidate, manifest_for
from training import breast_cancer

# float32 probabilities resolve log-odds to about 6e-8 * e^|log-odds|: the exactness check takes the
# rows whose variants' log-odds stay within this bound (most of the data set).
LOG_ODDS_BOUND = 6.0


@functools.cache
def linear_model():
    """breast-cancer's scaler + logistic regression pipeline, fitted on its training split, as ONNX."""
    data = breast_cancer.load_wisconsin()
    X_train, _, y_train, _ = breast_cancer._split(data, smoke=False, seed=42)
    pipeline = breast_cancer.candidate_pipelines(42)["logistic_regression"].fit(X_train, y_train)
    manifest = manifest_for(breast_cancer_candidate())
    spec = breast_cancer.tabular_input(breast_cancer.INPUT_NAME, data.feature_names, data.X[0], X_train)
    manifest = manifest.model_copy(update={"input": manifest.input.model_validate(spec)})
    return pipeline, manifest, breast_cancer.export_onnx(pipeline, len(data.feature_names)), data.X.astype(np.float32)


@pytest.mark.parametrize("calibration", [None, Calibration(method="platt", a=0.7, b=0.3)], ids=["raw", "platt"])
def test_the_linear_models_contributions_are_its_coefficients_times_the_standardised_values(calibration):
    pipeline, manifest, onnx, X = linear_model()
    classifier = OnnxClassifier(manifest.model_copy(update={"calibration": calibration}), onnx)
    predictions, _ = classifier.predict(X)
    classes = np.asarray([p["class_index"] for p in predictions])
    explained = feature_contributions(classifier, X, classes.tolist())

    scaler, regression = pipeline.named_steps["scaler"], pipeline.named_steps["classifier"]
    slope, intercept = (calibration.a, calibration.b) if calibration else (1.0, 0.0)
    # coef_ is for class 1 (benign); the malignant class's log-odds are their negation.
    benign = slope * regression.coef_[0] * (X - scaler.mean_) / scaler.scale_
    expected = np.where(classes[:, None] == 1, benign, -benign)
    logit = slope * pipeline.decision_function(X) + intercept  # benign's, as served
    baseline_logit = slope * pipeline.decision_function(scaler.mean_[None])[0] + intercept
    # Each contribution is measured on the baseline row with one feature changed: resolved where those
    # variants' log-odds are.
    resolved = np.abs(baseline_logit + benign).max(axis=1) < LOG_ODDS_BOUND
    assert resolved.sum() > 450  # of 569 rows, the public malignant example among them
    assert resolved[0] and abs(logit[0]) > LOG_ODDS_BOUND  # row 0 (the example): its own log-odds are not

    names = manifest.input.feature_names
    got = np.asarray([[e["contributions"][name] for name in names] for e in explained])
    np.testing.assert_allclose(got[resolved], expected[resolved], atol=1e-3)
    baseline = np.asarray([e["baseline_log_odds"] for e in explained])
    np.testing.assert_allclose(baseline, np.where(classes == 1, baseline_logit, -baseline_logit), atol=1e-5)
    # With the baseline's log-odds they add up to the row's (the linear model has no interactions).
    np.testing.assert_allclose(
        got[resolved].sum(axis=1) + baseline[resolved], np.where(classes == 1, logit, -logit)[resolved], atol=5e-3
    )
    assert {e["method"] for e in explained} == {"baseline_replacement"}
    assert [e["explained_class"] for e in explained] == [p["label"] for p in predictions]


def test_contributions_come_largest_first_keyed_by_feature_name():
    _, manifest, onnx, X = linear_model()
    classifier = OnnxClassifier(manifest, onnx)
    (explained,) = feature_contributions(classifier, X[:1], [0])
    assert set(explained["contributions"]) == set(manifest.input.feature_names)
    magnitudes = [abs(v) for v in explained["contributions"].values()]
    assert magnitudes == sorted(magnitudes, reverse=True) and magnitudes[0] > 0


def test_a_version_without_a_baseline_cannot_explain():
    _, manifest, onnx, X = linear_model()
    older = manifest.model_copy(update={"input": manifest.input.model_copy(update={"baseline": None})})
    with pytest.raises(InvalidInput) as refused:
        feature_contributions(OnnxClassifier(older, onnx), X[:1], [0])
    assert refused.value.message == (
        f"Model 'breast-cancer' version {manifest.version} records no feature baseline: "
        "explanations need a version trained since they exist."
    )


def test_training_records_the_training_splits_means_as_the_baseline():
    pipeline, manifest, _, _ = linear_model()
    np.testing.assert_allclose(manifest.input.baseline, pipeline.named_steps["scaler"].mean_)


def colour_classifier(layout: str = "NCHW") -> OnnxClassifier:
    candidate = colour_candidate(layout=layout)
    return OnnxClassifier(manifest_for(candidate), candidate.onnx)


def red_left_blue_right() -> bytes:
    """32 x 32 (the model's size, so nothing is resampled): 20 red columns, then 12 blue."""
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:, :20] = (220, 30, 30)
    pixels[:, 20:] = (30, 40, 220)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_occluding_the_red_half_lowers_red_and_occluding_the_blue_half_raises_it(layout):
    classifier = colour_classifier(layout)
    batch = tensor_from_bytes(red_left_blue_right(), classifier.manifest.input)[None]
    predictions, _ = classifier.predict(batch)
    assert predictions[0]["label"] == "red"
    (explained,) = occlusion_maps(classifier, batch, [predictions[0]["class_index"]])
    grid = np.asarray(explained["grid"])
    assert grid.shape == (GRID, GRID) == (6, 6)
    # Patch columns cover pixels 0-5-10-16-21-26-32: the first three are red, the last two blue.
    assert grid[:, :3].min() > 0 > grid[:, 4:].max()
    np.testing.assert_allclose(grid[0], grid[1], atol=1e-6)  # two rows of 5-pixel patches: alike
    assert explained["max_drop"] == pytest.approx(grid.max(), abs=1e-4)
    assert (explained["method"], explained["explained_class"]) == ("occlusion", "red")


def test_the_heatmap_is_a_png_of_the_documented_size_coloured_by_drop():
    classifier = colour_classifier()
    batch = tensor_from_bytes(red_left_blue_right(), classifier.manifest.input)[None]
    (explained,) = occlusion_maps(classifier, batch, [0])
    image = Image.open(io.BytesIO(base64.b64decode(explained["heatmap_png"], validate=True)))
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (HEATMAP_SIZE, HEATMAP_SIZE))
    assert explained["heatmap_size"] == HEATMAP_SIZE == 64
    pixels = np.asarray(image)
    # Left edge: the red patches' drop (the brightest end of the map); right edge: a rise, the dark end.
    assert pixels[:, 0].mean() > 2 * pixels[:, -1].mean()


def test_a_map_with_no_drop_is_all_the_dark_end():
    image = Image.open(io.BytesIO(base64.b64decode(heatmap_png(np.zeros((GRID, GRID))))))
    assert set(map(tuple, np.asarray(image).reshape(-1, 3))) == {(13, 8, 135)}


def test_one_occluded_batch_per_image(monkeypatch):
    classifier = colour_classifier()
    sizes = []
    run = classifier.predict_proba
    monkeypatch.setattr(classifier, "predict_proba", lambda batch: sizes.append(len(batch)) or run(batch))
    batch = np.zeros((3, 3, 32, 32), dtype=np.float32)
    explanations.occlusion_grids(classifier, batch, [0, 1, 2])
    assert sizes == [GRID * GRID + 1] * 3


def test_more_images_than_one_request_may_explain_is_413():
    check_budget("image", 4)
    with pytest.raises(PayloadTooLarge) as refused:
        check_budget("image", 5)
    assert refused.value.message == (
        "Explanations are computed for at most 4 images per request; this one has 5. Send fewer, or leave out explain."
    )
    assert refused.value.details == [{"max_explained": 4}]


def test_more_rows_than_one_request_may_explain_is_413():
    check_budget("tabular", 100)
    with pytest.raises(PayloadTooLarge) as refused:
        check_budget("tabular", 101)
    assert refused.value.message == (
        "Explanations are computed for at most 100 rows per request; this one has 101. "
        "Send fewer, or leave out explain."
    )
