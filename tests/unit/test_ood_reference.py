"""training/ood_reference.py's pure parts: features' drift bins, ranges with a margin, the margin's and the
score threshold's choice."""

from __future__ import annotations

import numpy as np
import pytest

from med_classifier.domain.manifest import OodReference
from training import ood_reference
from training.ood_reference import bounds, class_mix, features, score_threshold, smallest_margin


def test_a_features_drift_bins_are_its_inner_deciles_with_the_training_share_in_each_bin():
    (feature,) = features(["x"], np.arange(100, dtype=float)[:, None], margin=0.0)
    assert feature["edges"] == pytest.approx([9.9, 19.8, 29.7, 39.6, 49.5, 59.4, 69.3, 79.2, 89.1])
    assert feature["proportions"] == pytest.approx([0.1] * 10)


def test_a_constant_feature_has_one_edge_and_every_value_in_the_bin_from_it():
    # bin i holds edges[i-1] <= v < edges[i]: the constant sits in the last bin.
    (feature,) = features(["x"], np.zeros((20, 1)), margin=0.0)
    assert (feature["edges"], feature["proportions"]) == ([0.0], [0.0, 1.0])


def test_bounds_widen_the_training_range_by_the_margin_or_the_floor():
    low, high = bounds(np.asarray([[0.0, 5.0], [10.0, 5.0]]), margin=0.1, floor=0.02)
    assert low.tolist() == pytest.approx([-1.0, 4.98]) and high.tolist() == pytest.approx([11.0, 5.02])


def test_features_name_each_column_with_its_range_and_drift_bins():
    (radius,) = features(["mean radius"], np.arange(10, dtype=float)[:, None], margin=0.5)
    assert (radius["name"], radius["low"], radius["high"]) == ("mean radius", -4.5, 13.5)
    assert len(radius["proportions"]) == len(radius["edges"]) + 1 and sum(radius["proportions"]) == pytest.approx(1)


def test_class_mix_is_the_training_share_of_each_class():
    assert class_mix(np.asarray([0, 1, 1, 1]), ["malignant", "benign"]) == {"malignant": 0.25, "benign": 0.75}


def test_the_smallest_margin_within_budget_and_the_largest_when_none_is():
    assert smallest_margin(lambda m: 0.0 if m >= 0.15 else 0.06, 0.05) == 0.15
    assert smallest_margin(lambda m: 1.0, 0.05) == ood_reference.MARGINS[-1]


def test_the_score_threshold_flags_the_k_lowest_scores_within_budget_and_risk():
    scores = np.linspace(0.5, 0.99, 400)  # n + 1 = 401: a 2.5 % budget allows 10 flags, and the risk too
    threshold = score_threshold(np.zeros(400, dtype=bool), scores)
    assert threshold == pytest.approx((scores[9] + scores[10]) / 2)
    assert np.sum(scores < threshold) == 10


def test_the_risk_of_exceeding_5_percent_limits_the_threshold_where_the_budget_would_not():
    # n = 199: the budget allows 5 flags, but P(share > 5 %) = 0.027 at 5 and 0.0094 at 4 (RISK = 0.01).
    scores = np.linspace(0.5, 0.99, 199)
    assert np.sum(scores < score_threshold(np.zeros(199, dtype=bool), scores)) == 4


def test_images_the_statistics_flag_use_up_the_score_budget_first():
    scores = np.linspace(0.5, 0.99, 199)
    by_statistics = np.zeros(199, dtype=bool)
    by_statistics[[100, 150]] = True
    assert np.sum(scores < score_threshold(by_statistics, scores)) == 2


@pytest.mark.parametrize("n", [38, 62])
def test_too_few_validation_images_give_no_threshold(n):
    assert score_threshold(np.zeros(n, dtype=bool), np.linspace(0.5, 1, n)) is None


def test_a_margin_never_takes_contrast_or_colourfulness_below_none_at_all():
    train = np.asarray([[0.02, 0.05], [0.3, 0.4]])  # contrast, colourfulness
    contrast, colour = features(["contrast", "colourfulness"], train, margin=1.0, lowest={"contrast": 0.01})
    assert contrast["low"] == 0.01 and colour["low"] == pytest.approx(-0.3)
    grayscale = features(["colourfulness"], np.asarray([[0.0], [0.0]]), 0.0, 0.02, lowest={"colourfulness": 0.02})
    assert grayscale[0]["low"] == 0.0  # training images were colourless: so may inputs be


def test_no_reference_material_no_reference():
    assert ood_reference.finish(None, classifier=None) is None


def test_a_finished_tabular_reference_measures_its_false_flag_rate_on_the_test_rows():
    class Classifier:  # what finish() reads of an OnnxClassifier
        manifest = type("M", (), {"classes": ["a", "b"]})

        @staticmethod
        def predict_proba(inputs):
            return np.full((len(inputs), 2), 0.5)

    train = np.arange(40, dtype=float).reshape(20, 2)
    test = np.asarray([[1.0, 2.0], [100.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    material = ood_reference.tabular_reference(["x", "y"], ["a", "b"], train, np.asarray([0, 1] * 10), test, seed=0)
    reference = ood_reference.finish(material, Classifier())
    assert isinstance(reference, OodReference) and reference.score_threshold is None
    assert reference.false_flag_rate == 0.25  # the row of x = 100
    assert reference.class_mix == {"a": 0.5, "b": 0.5}
