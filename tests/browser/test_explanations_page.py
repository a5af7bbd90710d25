"""The page's Explain option in real Chromium against the local stack: a tabular prediction's top
feature contributions as a list of bars, an image's occlusion heatmap drawn over the image.
NOT FOR CLINICAL USE."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.helpers import IMAGES, model_view, open_model


def test_with_explain_on_the_top_feature_contributions_are_listed(page, stack):
    open_model(page, stack, "breast-cancer")
    page.check("#tabular-explain")
    page.click("#tabular-predict")
    expect(page.locator(".predicted-label")).to_have_text("malignant")
    rows = page.locator("#predict-result .contributions li")
    expect(rows).to_have_count(8)
    # The same features, in the same order, as the API's explanation of the same row.
    example = model_view(stack, "breast-cancer")["input"]["example"]
    answer = stack["http"].post(
        f"{stack['url']}/models/breast-cancer/predict", json={"instances": [example], "explain": True}, timeout=30
    )
    contributions = answer.json()["predictions"][0]["explanation"]["contributions"]
    assert rows.locator(".feature").all_inner_texts() == list(contributions)[:8]
    first_value = next(iter(contributions.values()))
    expect(rows.first.locator(".value")).to_contain_text(f"{abs(first_value):.2f}")
    expect(rows.first.locator(".value")).to_contain_text(
        "towards malignant" if first_value > 0 else "against malignant"
    )
    widths = rows.locator(".part").evaluate_all("els => els.map(e => parseFloat(e.style.width))")
    assert widths[0] == 100.0 and all(0 < w <= 100 for w in widths)
    expect(page.locator(".contributions")).to_have_attribute("aria-label", "Feature contributions to malignant")
    page.shot()


def test_without_explain_no_explanation_is_shown(page, stack):
    open_model(page, stack, "breast-cancer")
    page.click("#tabular-predict")
    expect(page.locator(".predicted-label")).to_have_text("malignant")
    expect(page.locator("#predict-result .explanation")).to_have_count(0)


def test_with_explain_on_the_heatmap_is_drawn_over_the_uploaded_image(page, stack):
    open_model(page, stack, "skin-lesion")
    page.set_input_files("#image-files", str(IMAGES / "skin-lesion-mel.png"))
    page.check("#image-explain")
    page.click("#image-predict")
    expect(page.locator(".predicted-label")).to_have_text("mel")
    overlay = page.locator("#predict-result .heatmap img.heatmap-overlay")
    image = page.locator("#predict-result .heatmap img.under")
    expect(overlay).to_be_visible()
    expect(overlay).to_have_attribute(
        "alt", "Occlusion heatmap of Image 1: skin-lesion-mel.png for mel, drawn over the image"
    )
    # Both decoded (the PNG heatmap is 64 x 64), and the heatmap covers the image exactly, half transparent.
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#predict-result .heatmap img'))"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    assert overlay.evaluate("el => [el.naturalWidth, el.naturalHeight]") == [64, 64]
    assert overlay.bounding_box() == image.bounding_box()
    assert 0 < float(overlay.evaluate("el => getComputedStyle(el).opacity")) < 1
    # Drawn after (over) the image in the same box.
    assert image.evaluate("el => el.nextElementSibling.classList.contains('heatmap-overlay')")
    expect(page.locator("#predict-result figure.explanation figcaption")).to_contain_text("6 × 6 patches")
    page.shot()
