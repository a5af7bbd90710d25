"""The page's charts in Chromium: each model's test metrics across its versions, the operating point
of a binary model on its precision-recall curve, the reliability diagram of a calibrated one. The
breast-cancer versions they show are copies of the published one with their metrics, gate, operating
point and calibration filled in here (tests/helpers/charted_models.py); production goes back to the
published version afterwards. NOT FOR CLINICAL USE."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import model_view, open_model
from tests.helpers.charted_models import PR_CURVE, RELIABILITY, calibration, operating_point, publish_copies
from tests.helpers.polling import wait_for

MODEL = "breast-cancer"
GATE = {"passed": True, "min_test_recall": 0.95, "max_cv_recall_std": 0.05}
# (test_recall, test_accuracy) of the three copies, oldest first.
SCORES = [(0.9474, 0.9386), (0.9861, 0.9561), (0.9722, 0.9649)]


@pytest.fixture(scope="module")
def versions(stack):
    """Three copies of the published breast-cancer version, oldest first: "without" (no operating point, no
    calibration, as versions before them), "charted" (both), "uncalibrated" (an operating point only)."""
    store = stack["store"]
    published = store.read_pointer(MODEL).version
    metrics = store.read_manifest(MODEL, published).metrics
    fields = [
        {"operating_point": None, "calibration": None},
        {"operating_point": operating_point("malignant"), "calibration": calibration()},
        {"operating_point": operating_point("malignant"), "calibration": None},
    ]
    without, charted, uncalibrated = publish_copies(
        store,
        MODEL,
        [
            {**f, "gate": GATE, "metrics": {**metrics, "test_recall": recall, "test_accuracy": accuracy}}
            for f, (recall, accuracy) in zip(fields, SCORES, strict=True)
        ],
    )
    yield {"without": without, "charted": charted, "uncalibrated": uncalibrated}
    store.promote(MODEL, published)


def serving(stack, manifest) -> dict:
    """Promotes a copy and returns the registry's view once it shows it."""
    stack["store"].promote(MODEL, manifest.version)
    return wait_for(
        lambda: (view := model_view(stack, MODEL))["production_version"] == manifest.version and view,
        timeout=30,
        what=f"{manifest.version} in production",
    )


def centre(locator) -> tuple[float, float]:
    box = locator.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_the_metrics_chart_has_a_point_per_version_and_metric_and_marks_production(page, stack, versions):
    view = serving(stack, versions["charted"])
    oldest_first = list(reversed(view["versions"]))
    assert len(oldest_first) >= 4  # the published version and the three copies
    production = next(i for i, v in enumerate(oldest_first) if v["production"])
    open_model(page, stack, MODEL)
    chart = page.locator("#chart-metrics")
    expect(chart).to_be_visible()
    for metric in ("test_recall", "test_accuracy"):  # the gate's minimum and a headline score
        markers = chart.locator(f".marker[data-metric={metric}]")
        expect(markers).to_have_count(len(oldest_first))
        by_x = sorted(markers.all(), key=lambda m: centre(m)[0])
        assert [m.get_attribute("data-version") for m in by_x] == [v["version"] for v in oldest_first]
        assert [float(m.get_attribute("data-value")) for m in by_x] == [v["metrics"][metric] for v in oldest_first]
        # Higher scores are drawn higher.
        heights = {float(m.get_attribute("data-value")): centre(m)[1] for m in by_x}
        assert [heights[v] for v in sorted(heights)] == sorted(heights.values(), reverse=True)
    # cv_recall_std is a gate maximum on another scale: in no chart.
    expect(chart.locator(".marker[data-metric=cv_recall_std]")).to_have_count(0)
    # Production: its points, and a labelled line through them.
    expect(chart.locator(".marker.production")).to_have_count(2)
    assert {m.get_attribute("data-version") for m in chart.locator(".marker.production").all()} == {
        versions["charted"].version
    }
    mark = chart.locator(".production-mark")
    expect(mark).to_have_attribute("data-version", versions["charted"].version)
    expect(mark.locator("text")).to_have_text("production")
    assert abs(centre(mark.locator("line"))[0] - centre(chart.locator(".marker.production").first)[0]) < 1
    # Named in words, not by colour alone.
    legend = page.locator("#chart-metrics-panel .legend li")
    expect(legend).to_have_text(
        ["test_recall (the gate wants at least 0.95)", "test_accuracy", "the version in production"]
    )
    # Accessible name and description, from the svg's own <title> and <desc>.
    expect(chart).to_have_attribute("role", "img")
    expect(chart).to_have_accessible_name(f"{MODEL}: test metrics across its versions")
    expect(chart).to_have_accessible_description(
        re.compile(
            rf"^2 scores on the held-out test set at each of {len(oldest_first)} versions, numbered 1 \(oldest\) to "
            rf"{len(oldest_first)} \(newest\); version {production + 1} is in production\. "
            rf"test_recall .*, 0\.9861 in production; test_accuracy .*, 0\.9561 in production\.$"
        )
    )
    # The text alternative: every version's values, oldest first.
    rows = page.locator("#chart-metrics-values tbody tr")
    expect(rows).to_have_count(len(oldest_first))
    for i, v in enumerate(oldest_first):
        cells = rows.nth(i).locator("th, td")
        expect(cells).to_have_text(
            [
                str(i + 1),
                v["version"],
                "yes" if v["production"] else "no",
                f"{v['metrics']['test_recall']:.4g}",
                f"{v['metrics']['test_accuracy']:.4g}",
            ]
        )
    expect(page.locator("#chart-metrics-values thead th")).to_have_text(
        ["#", "Version", "In production", "test_recall", "test_accuracy"]
    )
    page.shot()


def test_the_operating_point_is_marked_on_the_precision_recall_curve_with_its_threshold(page, stack, versions):
    serving(stack, versions["charted"])
    open_model(page, stack, MODEL)
    chart = page.locator("#chart-pr")
    expect(chart).to_be_visible()
    expect(chart).to_have_accessible_name(f"{MODEL}: precision–recall curve on the test set with the operating point")
    expect(chart).to_have_accessible_description(
        "Precision against recall of malignant on the held-out test set as the threshold moves (9 points). "
        "The operating point, malignant when P(malignant) ≥ 0.23, chosen on 5 x 10-fold stratified CV, "
        "out-of-fold for a recall of at least 0.99, is marked: test recall 0.986, precision 0.912, specificity 0.946."
    )
    # One vertex per curve point; the marker sits on the curve's vertex at the test recall and precision.
    on_curve = chart.evaluate(
        """svg => {
            const curve = svg.querySelector('.pr-curve').points;
            const box = svg.querySelector('#op-marker').getBBox();
            const vertex = curve.getItem(7);
            const [x, y] = [box.x + box.width / 2, box.y + box.height / 2];
            return [curve.numberOfItems, Math.hypot(x - vertex.x, y - vertex.y)];
        }"""
    )
    assert PR_CURVE[7] == (0.986, 0.912)
    assert on_curve[0] == len(PR_CURVE) and on_curve[1] < 0.5, on_curve
    marker = chart.locator("#op-marker")
    expect(marker).to_have_attribute("data-recall", "0.986")
    expect(marker).to_have_attribute("data-precision", "0.912")
    expect(chart.locator(".op-label")).to_have_text("threshold 0.23recall 0.986, precision 0.912")
    expect(page.locator("#op-summary")).to_have_text(
        "Predicts malignant when P(malignant) ≥ 0.23, chosen on 5 x 10-fold stratified CV, out-of-fold for a recall "
        "of at least 0.99. Test set: recall 0.986, precision 0.912, specificity 0.946. "
        "Cross-validation: recall 0.99, precision 0.902, specificity 0.938."
    )
    expect(page.locator("#chart-pr-panel .legend li")).to_have_text(
        ["precision–recall curve (test set)", "operating point (threshold 0.23)"]
    )
    # The text alternative: the operating point's figures and every curve point.
    expect(page.locator("#chart-pr-point tbody tr")).to_have_text(
        ["cross-validation0.990.9020.938", "test set0.9860.9120.946"]
    )
    expect(page.locator("#chart-pr-values tbody tr")).to_have_text([f"{r:g}{p:g}" for r, p in PR_CURVE])
    page.shot()


def test_the_reliability_diagram_appears_with_a_calibration_and_not_without(page, stack, versions):
    serving(stack, versions["charted"])
    open_model(page, stack, MODEL)
    chart = page.locator("#chart-reliability")
    expect(chart).to_be_visible()
    expect(chart).to_have_accessible_name(f"{MODEL}: reliability diagram of the served probabilities (test set)")
    expect(chart).to_have_accessible_description(re.compile(r"in 5 bins .* dashed diagonal\. Calibration: platt"))
    expect(chart.locator(".bin")).to_have_count(len(RELIABILITY))
    expect(chart.locator(".diagonal")).to_have_count(1)
    # The diagonal runs from (0, 0) to (1, 1): through the axes' corners.
    ends = "line => ['x1', 'y1', 'x2', 'y2'].map(a => line.getAttribute(a))"
    corners = chart.locator(".diagonal").evaluate(ends)
    # The axes are the plot's last two axis lines (the others are tick marks): the bottom one, then the left one.
    bottom, left = chart.locator("line.axis").evaluate_all(f"lines => lines.slice(-2).map({ends})")
    assert corners == [left[0], bottom[1], bottom[2], left[1]]
    expect(page.locator("#calibration-summary")).to_have_text(
        "Calibration: platt, fitted on 3-fold CV within the training split. "
        "Brier score on the test set: 0.031 before, 0.027 after (lower is better)."
    )
    expect(page.locator("#chart-reliability-values tbody tr")).to_have_text(
        [f"{i + 1}{p:g}{f:g}{n}" for i, (p, f, n) in enumerate(RELIABILITY)]
    )
    page.shot("-calibrated")
    # An operating point but no calibration: the curve without the diagram.
    serving(stack, versions["uncalibrated"])
    open_model(page, stack, MODEL)
    expect(page.locator("#chart-pr")).to_be_visible()
    expect(page.locator("#chart-reliability")).to_have_count(0)
    page.shot("-uncalibrated")
    # Neither (as versions published before them): the metrics chart only.
    serving(stack, versions["without"])
    open_model(page, stack, MODEL)
    expect(page.locator("#chart-metrics")).to_be_visible()
    expect(page.locator("#chart-pr")).to_have_count(0)
    expect(page.locator("#chart-reliability")).to_have_count(0)
    page.shot("-without")
    # A multiclass model has no operating point to chart.
    open_model(page, stack, "skin-lesion")
    expect(page.locator("#chart-metrics")).to_be_visible()
    expect(page.locator("#chart-pr")).to_have_count(0)


def luminance(colour: str) -> float:
    channels = [int(c) / 255 for c in re.findall(r"\d+", colour)[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_on_white(colour: str) -> float:
    return 1.05 / (luminance(colour) + 0.05)


def test_the_charts_are_legible_and_fit_a_phone(phone_page, stack, versions):
    page = phone_page
    serving(stack, versions["charted"])
    open_model(page, stack, MODEL)
    for chart in ("#chart-metrics", "#chart-pr", "#chart-reliability"):
        expect(page.locator(chart)).to_be_visible()
        assert page.locator(chart).bounding_box()["width"] <= 375
    page.locator("#model-charts details").evaluate_all("all => all.forEach(d => { d.open = true; })")
    width = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width
    # Text at least 4.5:1 and lines and markers at least 3:1 on the white card (WCAG 1.4.3, 1.4.11).
    colours = page.locator("#model-charts").evaluate(
        """box => ({
            text: Array.from(box.querySelectorAll('svg.plot text')).map(t => getComputedStyle(t).fill),
            lines: Array.from(box.querySelectorAll('.line, .marker, .op-marker, .diagonal, .production-line, .axis'))
                .map(e => getComputedStyle(e).stroke !== 'none' && !e.classList.contains('marker')
                    ? getComputedStyle(e).stroke : getComputedStyle(e).fill),
            size: Math.min(...Array.from(box.querySelectorAll('svg.plot text'))
                .map(t => t.getBoundingClientRect().height)),
        })"""
    )
    assert colours["text"] and min(contrast_on_white(c) for c in colours["text"]) >= 4.5, colours["text"]
    assert colours["lines"] and min(contrast_on_white(c) for c in colours["lines"]) >= 3, colours["lines"]
    assert colours["size"] >= 10, colours["size"]  # px on screen, at 375 px wide
    page.shot()
