"""Out-of-distribution flags (domain/ood.py): every reason's words, the boundaries, the score
threshold, and versions without a reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from med_classifier.domain.manifest import FeatureReference, OodReference
from med_classifier.domain.ood import assess, assess_summaries, feature_reason, max_softmax, score_reason

RADIUS = FeatureReference(name="mean radius", low=6.981, high=28.11)
TEXTURE = FeatureReference(name="mean texture", low=9.71, high=39.28)
TABULAR = OodReference(features=[RADIUS, TEXTURE])
CONFIDENT = np.asarray([[0.9, 0.1]])


def statistic(name: str, low: float, high: float) -> FeatureReference:
    return FeatureReference(name=name, low=low, high=high)


def images(threshold: float | None = 0.52, flag_rate: float | None = 0.05) -> OodReference:
    return OodReference(
        features=[
            statistic("brightness", 0.2, 0.8),
            statistic("contrast", 0.05, 0.4),
            statistic("colourfulness", 0.1, 0.6),
            statistic("edge_density", 0.01, 0.1),
            statistic("transparent_fraction", 0.0, 0.02),
        ],
        score="max_softmax",
        score_threshold=threshold,
        score_flag_rate=flag_rate,
    )


def one_row(reference: OodReference, values: list[float], probabilities=CONFIDENT):
    (verdict,) = assess(reference, ["mean radius", "mean texture"], np.asarray([values]), probabilities)
    return verdict


def test_a_row_inside_every_range_is_in_distribution_with_no_reasons():
    assert one_row(TABULAR, [14.0, 20.0]) == (True, [])


def test_an_absurd_radius_is_flagged_naming_the_feature_its_value_and_the_range():
    assert one_row(TABULAR, [-3e38, 20.0]) == (
        False,
        ["mean radius = -3e+38 is outside the range seen in training (6.981 to 28.11)"],
    )


def test_every_feature_out_of_range_is_a_reason_of_its_own_in_reference_order():
    assert one_row(TABULAR, [281.1, 397.0]) == (
        False,
        [
            "mean radius = 281.1 is outside the range seen in training (6.981 to 28.11)",
            "mean texture = 397 is outside the range seen in training (9.71 to 39.28)",
        ],
    )


@pytest.mark.parametrize("value", [6.981, 28.11])
def test_the_range_bounds_are_inside(value):
    assert one_row(TABULAR, [value, 20.0]) == (True, [])


@pytest.mark.parametrize("value", [np.nextafter(6.981, -math.inf), np.nextafter(28.11, math.inf)])
def test_just_beyond_a_bound_is_outside(value):
    in_distribution, reasons = one_row(TABULAR, [value, 20.0])
    assert in_distribution is False
    assert reasons[0].startswith("mean radius = ")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_non_finite_value_is_flagged_not_a_crash(value):
    assert one_row(TABULAR, [value, 20.0]) == (False, [f"mean radius = {value} is not a finite number"])


def test_rows_are_assessed_each_on_their_own():
    verdicts = assess(
        TABULAR, ["mean radius", "mean texture"], np.asarray([[14.0, 20.0], [1e6, 20.0]]), np.full((2, 2), 0.5)
    )
    assert [v[0] for v in verdicts] == [True, False]


def test_a_reference_feature_missing_from_the_inputs_is_not_checked():
    (verdict,) = assess(TABULAR, ["mean texture"], np.asarray([[20.0]]), CONFIDENT)
    assert verdict == (True, [])


def test_without_a_reference_every_prediction_is_not_checked():
    assert assess(None, ["mean radius"], np.asarray([[-3e38], [1.0]]), np.full((2, 2), 0.5)) == [(None, []), (None, [])]


def test_without_a_reference_summaries_are_not_checked_either():
    assert assess_summaries(None, [{"brightness": 0.0}], CONFIDENT) == [(None, [])]


def test_no_inputs_no_verdicts():
    assert assess(TABULAR, ["mean radius", "mean texture"], np.zeros((0, 2)), np.zeros((0, 2))) == []


IN_DISTRIBUTION_IMAGE = {
    "brightness": 0.5,
    "contrast": 0.2,
    "colourfulness": 0.3,
    "edge_density": 0.05,
    "transparent_fraction": 0.0,
}


def one_image(reference: OodReference, probabilities=CONFIDENT, **statistics: float):
    (verdict,) = assess_summaries(reference, [{**IN_DISTRIBUTION_IMAGE, **statistics}], probabilities)
    return verdict


def test_an_image_like_the_training_images_is_in_distribution():
    assert one_image(images()) == (True, [])


def test_a_mostly_transparent_image():
    assert one_image(images(), transparent_fraction=0.92) == (
        False,
        ["the image is mostly transparent (92 % of pixels)"],
    )


def test_a_partly_transparent_image_says_how_much_training_images_had():
    assert one_image(images(), transparent_fraction=0.3) == (
        False,
        ["the image is partly transparent (30 % of pixels; training images: at most 2 %)"],
    )


def test_a_grayscale_image_sent_to_a_colour_model():
    assert one_image(images(), colourfulness=0.0) == (
        False,
        ["the image has no colour; this model was trained on colour images"],
    )


def test_a_dull_but_coloured_image_gets_the_plain_range_reason():
    assert one_image(images(), colourfulness=0.05) == (
        False,
        ["colourfulness = 0.05 is outside the range seen in training (0.1 to 0.6)"],
    )


def test_a_colour_image_sent_to_a_grayscale_model():
    grayscale = OodReference(features=[statistic("colourfulness", -0.02, 0.02)])
    assert one_image(grayscale, colourfulness=0.4) == (
        False,
        ["the image is in colour; this model was trained on grayscale images"],
    )


def test_a_blank_image():
    assert one_image(images(), contrast=0.0, edge_density=0.0) == (
        False,
        [
            "the image is blank (a single flat colour)",
            "edge_density = 0 is outside the range seen in training (0.01 to 0.1)",
        ],
    )


def test_a_low_contrast_image_that_is_not_flat_gets_the_plain_range_reason():
    assert one_image(images(), contrast=0.03) == (
        False,
        ["contrast = 0.03 is outside the range seen in training (0.05 to 0.4)"],
    )


def test_noise_has_more_edges_than_any_training_image():
    assert one_image(images(), edge_density=0.33) == (
        False,
        ["edge_density = 0.33 is outside the range seen in training (0.01 to 0.1)"],
    )


def test_a_low_confidence_score_is_flagged_with_the_threshold_and_its_test_share():
    assert one_image(images(), probabilities=np.asarray([[0.31, 0.3, 0.39]])) == (
        False,
        ["confidence score 0.390 is below 0.520, which 5 % of in-distribution test images fall below"],
    )


def test_the_score_reason_without_a_measured_share():
    assert score_reason(0.31, images(flag_rate=None)) == "confidence score 0.310 is below 0.520"


def test_a_score_at_the_threshold_is_in_distribution():
    assert one_image(images(), probabilities=np.asarray([[0.52, 0.48]])) == (True, [])


def test_no_threshold_no_score_check():
    assert one_image(images(threshold=None), probabilities=np.asarray([[0.34, 0.33, 0.33]])) == (True, [])


def test_the_score_reads_class_probability_mappings_as_the_predictions_hold_them():
    rows = [{"a": 0.2, "b": 0.8}, {"a": 0.6, "b": 0.4}]
    assert max_softmax(rows).tolist() == [0.8, 0.6]
    assert max_softmax(np.asarray([[0.2, 0.8]])).tolist() == [0.8]


def test_statistics_and_score_reasons_come_together():
    verdict = one_image(images(), probabilities=np.asarray([[0.45, 0.3, 0.25]]), transparent_fraction=1.0)
    assert verdict == (
        False,
        [
            "the image is mostly transparent (100 % of pixels)",
            "confidence score 0.450 is below 0.520, which 5 % of in-distribution test images fall below",
        ],
    )


def test_a_non_finite_image_statistic_is_not_a_finite_number():
    assert feature_reason(statistic("brightness", 0.2, 0.8), math.nan) == "brightness = nan is not a finite number"
