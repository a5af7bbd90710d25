"""Operating points (training/operating_point.py): the threshold reaching a target recall, and the
figures reported at it."""

from __future__ import annotations

import numpy as np
import pytest

from med_classifier.domain.decision import decide
from med_classifier.domain.manifest import OperatingPoint
from training.operating_point import MAX_THRESHOLD, choose, choose_threshold, fit_serving, pr_curve, rates

# scores / 2: every threshold below the 0.5 ceiling
SCORES = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]) / 2
POSITIVE = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0], dtype=bool)  # 5 positives: 0.95 0.9 0.7 0.6 0.4 (/ 2)


@pytest.mark.parametrize(
    ("target", "threshold"),
    # midway between the lowest positive that must be found and the next lower score
    [(1.0, 0.175), (0.99, 0.175), (0.8, 0.275), (0.79, 0.275), (0.6, 0.325), (0.2, 0.4625), (0.01, 0.4625)],
)
def test_threshold_is_midway_below_the_lowest_positive_the_target_recall_needs(target, threshold):
    chosen = choose_threshold(SCORES, POSITIVE, target)
    assert chosen == pytest.approx(threshold)
    assert rates(SCORES, POSITIVE, chosen)["recall"] >= target
    # the lowest positive counted is the lowest score at or above the threshold: moving the threshold
    # past it misses the target
    lowest_counted = SCORES[SCORES >= chosen].min()
    assert POSITIVE[SCORES == lowest_counted].all()
    assert rates(SCORES, POSITIVE, np.nextafter(lowest_counted, 1.0))["recall"] < target


def test_threshold_is_the_lowest_positive_when_nothing_scores_lower():
    assert choose_threshold(np.array([0.4, 0.2, 0.3]), np.array([True, True, False]), 1.0) == 0.2


def test_threshold_never_rises_above_the_equal_cost_one():
    # saturated outputs: the target is reached up to 0.99995, and at the 0.5 ceiling too
    scores = np.array([1.0, 1.0, 1.0, 0.9999, 0.2, 0.1])
    positive = np.array([True, True, True, True, False, False])
    assert choose_threshold(scores, positive, 0.75) == MAX_THRESHOLD == 0.5
    assert rates(scores, positive, MAX_THRESHOLD)["recall"] == 1.0


def test_target_exactly_reachable_in_floating_point():
    # 0.99 * 100 is 99.00000000000001 in floating point: still 99 of 100 positives, not all 100
    scores = np.linspace(0.5, 0.01, 100)
    assert choose_threshold(scores, np.ones(100, dtype=bool), 0.99) == pytest.approx((scores[98] + scores[99]) / 2)


def test_a_score_equal_to_the_threshold_is_positive_and_just_below_is_not():
    point = OperatingPoint(positive_class="malignant", threshold=0.3, target_recall=0.99, chosen_on="cv")
    proba = np.array([[0.3, 0.7], [np.nextafter(0.3, 0.0), 1 - np.nextafter(0.3, 0.0)]])
    assert decide(proba, ["malignant", "benign"], point).tolist() == [0, 1]


def test_no_positives_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match=r"^cannot choose a threshold: no positive examples to measure recall on$"):
        choose_threshold(SCORES, np.zeros(10, dtype=bool), 0.99)


@pytest.mark.parametrize("target", [0.0, 1.01, -0.5])
def test_target_recall_out_of_range_is_refused(target):
    with pytest.raises(ValueError, match=rf"^target recall must be in \(0, 1\], got {target}$"):
        choose_threshold(SCORES, POSITIVE, target)


def test_rates_at_a_threshold():
    # >= 0.3: predicted positive 0.95 0.9 0.8 0.7 0.6 (/ 2) -> tp 4, fp 1; below: tn 4, fn 1 (0.4 / 2)
    assert rates(SCORES, POSITIVE, 0.3) == {"recall": 0.8, "precision": 0.8, "specificity": 0.8}


def test_pr_curve_is_downsampled_and_keeps_both_ends():
    rng = np.random.default_rng(0)
    scores, positive = rng.random(500), rng.random(500) < 0.4
    curve = pr_curve(scores, positive, points=20)
    assert len(curve) == 20
    assert curve[0][0] == 1.0 and curve[-1] == (0.0, 1.0)  # recall 1 first; sklearn's end point last
    recalls = [r for r, _ in curve]
    assert recalls == sorted(recalls, reverse=True)


def test_choose_reports_the_figures_where_it_was_chosen():
    proba = np.column_stack([SCORES, 1 - SCORES])  # column 0 = "malignant"
    y = np.where(POSITIVE, 0, 1)
    point = choose(proba, y, ["malignant", "benign"], "malignant", 0.8, "cv")
    assert point.threshold == pytest.approx(0.275) and point.chosen_on == "cv"
    assert point.cv == rates(SCORES, POSITIVE, 0.3) == {"recall": 0.8, "precision": 0.8, "specificity": 0.8}


def test_fit_serving_measures_the_test_set_at_the_threshold_chosen_on_the_fitting_data():
    rng = np.random.default_rng(7)

    def draw(n):
        y = (rng.random(n) < 0.4).astype(int)  # 1 = positive ("b")
        p = np.clip(0.5 + (y - 0.5) * rng.uniform(0.0, 0.9, n), 0.01, 0.99)
        return np.column_stack([1 - p, p]), y

    fit_proba, fit_y = draw(600)
    test_proba, y_test = draw(200)
    serving = fit_serving(
        classes=["a", "b"],
        outputs={"probabilities": "p"},
        fit_proba=fit_proba,
        fit_y=fit_y,
        fitted_on="cv",
        test_proba=test_proba,
        y_test=y_test,
        target=("b", 0.95),
    )
    served = serving.served
    point = served.operating_point
    assert point.cv["recall"] >= 0.95
    calibrated_fit = served.proba(fit_proba)
    assert point.threshold == choose_threshold(calibrated_fit[:, 1], fit_y == 1, 0.95)
    np.testing.assert_array_equal(serving.test_proba, served.proba(test_proba))
    assert point.test == rates(serving.test_proba[:, 1], y_test == 1, point.threshold)
    fields = serving.candidate_fields()
    assert OperatingPoint(**fields["operating_point"]) == point
    assert fields["calibration"]["brier_before"] is not None


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1"])
def test_cli_refuses_a_target_recall_outside_0_1(value, capsys):
    from training import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["breast-cancer", "--target-recall", value, "--no-publish"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.rstrip().endswith("error: --target-recall must be in (0, 1]")


def test_cli_passes_the_target_recall_to_the_trainer():
    from training import cli

    parser = cli.build_parser()
    assert cli._options(parser.parse_args(["chest-ct", "--target-recall", "0.9"])).target_recall == 0.9
    assert cli._options(parser.parse_args(["chest-ct"])).target_recall is None  # the trainer's default
