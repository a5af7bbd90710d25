"""The web page (GET /) in real Chromium against the local stack: models, predict,
upload, retraining, errors, keyboard and phone width, each signed in through the page's
form (tests/browser/test_sign_in.py covers signing in and out). NOT FOR CLINICAL USE."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import IMAGES, MODELS, model_view, open_model, sign_in


def bars(page) -> dict[str, str]:
    rows = page.locator("#predict-result .bars li")
    return {
        rows.nth(i).locator(".cls").inner_text(): rows.nth(i).locator(".pct").inner_text() for i in range(rows.count())
    }


def test_page_loads_with_the_four_models_and_the_notice(page, stack):
    page.goto(stack["url"] + "/")
    expect(page).to_have_title(re.compile("NOT FOR CLINICAL USE"))
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("NOT FOR CLINICAL USE")
    expect(page.locator("footer")).to_contain_text("NOT FOR CLINICAL USE")
    sign_in(page, "clinician")
    expect(page.locator("#model-select option")).to_have_count(4)
    assert [o.get_attribute("value") for o in page.locator("#model-select option").all()] == MODELS
    # The first model's registry view: version, metrics and input schema.
    view = model_view(stack, "breast-cancer")
    facts = page.locator("#model-facts")
    expect(facts).to_contain_text(view["production_version"])
    expect(facts).to_contain_text("tabular, 30 features")
    expect(page.locator("#metrics-table tbody tr")).to_have_count(len(view["metrics"]))
    expect(page.locator("#metrics-table")).to_contain_text("test_recall")
    page.select_option("#model-select", "skin-lesion")
    expect(facts).to_contain_text("image, 96×96 px, 3 channels")
    expect(facts).to_contain_text(model_view(stack, "skin-lesion")["production_version"])
    expect(page.locator("#image-form")).to_be_visible()
    expect(page.locator("#tabular-form")).to_be_hidden()
    # By keyboard: signing in leaves focus on "Sign out"; the next Tab stop is the model, focus is visible.
    # (The skip link is the first Tab stop: test_sign_in.py, signed out.)
    page.locator("#sign-out-button").focus()
    page.keyboard.press("Tab")
    expect(page.locator("#model-select")).to_be_focused()
    assert page.locator("#model-select").evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    # Every form control has a label; every control a person presses is a <button>.
    unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll('input, select, textarea, progress'))
        .filter(el => !el.labels || el.labels.length === 0).map(el => el.id || el.outerHTML)""")
    assert unlabelled == []
    assert page.locator("[onclick], a[href='#'], div[role=button]").count() == 0
    page.shot()


def test_tabular_predict_with_the_prefilled_example(page, stack):
    open_model(page, stack, "breast-cancer")
    example = model_view(stack, "breast-cancer")["input"]["example"]
    fields = page.locator("#feature-grid input")
    expect(fields).to_have_count(30)
    assert [float(fields.nth(i).input_value()) for i in range(30)] == example
    expect(page.locator("label[for=feature-0]")).to_have_text("mean radius")
    # By keyboard: Enter in a field submits the form.
    fields.nth(0).focus()
    page.keyboard.press("Enter")
    expect(page.locator(".predicted-label")).to_have_text("malignant")
    expect(page.locator(".confidence")).to_contain_text("%")
    expect(page.locator("#predict-result .ood-warning")).to_have_count(0)  # the example is in distribution
    assert set(bars(page)) == {"malignant", "benign"}
    widths = page.locator("#predict-result .bars .fill").evaluate_all("els => els.map(e => e.style.width)")
    assert len(widths) == 2 and all(w.endswith("%") for w in widths) and float(widths[0][:-1]) > 50
    # Drawn as wide as its share of the track (an inline span would ignore its width and draw nothing).
    drawn = page.locator("#predict-result .bars li.top").evaluate(
        "li => li.querySelector('.fill').getBoundingClientRect().width / li.querySelector('.track').clientWidth"
    )
    assert drawn == pytest.approx(float(widths[0][:-1]) / 100, abs=0.02)
    expect(page.locator("#inference-time")).to_contain_text(re.compile(r"inference \d+\.\d\d ms"))
    page.shot()


def test_an_absurd_value_gets_a_visible_warning_with_its_reason(page, stack):
    open_model(page, stack, "breast-cancer")
    page.fill("#feature-0", "-3e38")
    page.click("#tabular-predict")
    warning = page.locator("#predict-result .ood-warning")
    expect(warning).to_be_visible()
    expect(warning).to_have_attribute("role", "note")
    expect(warning).to_contain_text("unlike the model's training data")
    expect(warning.locator("li")).to_have_text(
        [re.compile(r"^mean radius = -3e\+38 is outside the range seen in training \(.+ to .+\)$")]
    )
    page.shot()


def test_image_predict_by_choosing_a_file(page, stack):
    open_model(page, stack, "skin-lesion")
    page.set_input_files("#image-files", str(IMAGES / "skin-lesion-mel.png"))
    page.click("#image-predict")
    expect(page.locator(".predicted-label")).to_have_text("mel")
    assert set(bars(page)) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    expect(page.locator("#predict-result .bars li.top .cls")).to_have_text("mel")
    expect(page.locator("#predict-result img")).to_have_attribute("alt", "Preview of skin-lesion-mel.png")
    expect(page.locator("#inference-time")).to_contain_text("skin-lesion version")
    page.shot()


def test_several_images_in_one_request(page, stack):
    open_model(page, stack, "chest-ct")
    page.set_input_files(
        "#image-files", [str(IMAGES / "chest-ct-normal.png"), str(IMAGES / "chest-ct-adenocarcinoma.png")]
    )
    page.click("#image-predict")
    expect(page.locator(".predicted-label")).to_have_text(["normal", "adenocarcinoma"])
    expect(page.locator("#predict-result article h3")).to_have_text(
        ["Image 1: chest-ct-normal.png", "Image 2: chest-ct-adenocarcinoma.png"]
    )
    page.shot()


def test_classify_then_upload_the_image_labelled_and_see_the_counter_change(page, stack):
    before = model_view(stack, "chest-ct")["retraining"]
    open_model(page, stack, "chest-ct")
    page.set_input_files("#image-files", str(IMAGES / "chest-ct-normal.png"))
    page.click("#image-predict")
    expect(page.locator(".predicted-label")).to_have_text("normal")
    expect(page.locator("#total-uploads")).to_have_text(str(before["total_uploads"]))
    expect(page.locator("#since-last-job")).to_have_text(f"{before['uploads_since_last_job']} of 4")
    page.select_option("#upload-label", "normal")
    page.set_input_files("#upload-files", str(IMAGES / "chest-ct-normal.png"))
    page.click("#upload-button")
    progress = page.locator("#upload-list progress")
    expect(progress).to_have_js_property("value", 100)
    expect(page.locator("#upload-list label")).to_contain_text("chest-ct-normal.png")
    expect(page.locator("#upload-list .ok")).to_have_text("Uploaded")
    # S3 → queue → counter function, then the page's next refresh.
    expect(page.locator("#total-uploads")).to_have_text(str(before["total_uploads"] + 1))
    expect(page.locator("#since-last-job")).to_have_text(f"{before['uploads_since_last_job'] + 1} of 4")
    expect(page.locator("#threshold-progress")).to_have_js_property("value", before["uploads_since_last_job"] + 1)
    expect(page.locator("#upload-status")).to_contain_text("Counted")
    expect(page.locator("#upload-error")).to_be_empty()
    after = model_view(stack, "chest-ct")["retraining"]
    assert after["total_uploads"] == before["total_uploads"] + 1
    keys = [
        o["Key"]
        for o in stack["s3"]
        .list_objects_v2(Bucket=stack["env"]["UPLOADS_BUCKET"], Prefix="uploads/chest-ct/normal/")
        .get("Contents", [])
    ]
    assert keys, "the image did not reach the uploads bucket"
    page.shot()


def test_api_errors_are_rendered_as_readable_messages(page, stack):
    open_model(page, stack, "breast-cancer-lite")
    error = page.locator("#predict-error")
    # A cleared field: the API's 422 names the feature, and the field is marked.
    page.fill("#feature-1", "")
    page.click("#tabular-predict")
    expect(error).to_contain_text("422")
    expect(error).to_contain_text("feature 1 (mean texture)")
    expect(page.locator("#feature-1")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#predict-result")).to_be_empty()
    # Text where a number belongs.
    page.fill("#feature-1", "ten")
    page.click("#tabular-predict")
    expect(error).to_contain_text("expected a number, got str 'ten'")
    page.shot("-422")
    # The example back: the error goes away.
    page.click("#reset-example")
    page.click("#tabular-predict")
    expect(page.locator(".predicted-label")).to_have_count(1)
    expect(error).to_be_empty()
    # A network failure is said in words.
    page.route("**/predict", lambda route: route.abort())
    page.click("#tabular-predict")
    expect(error).to_contain_text("Could not reach the API")
    page.unroute("**/predict")
    page.shot("-network")
    # (A 403 for a retrain without the group, a 401 and an expired sign-in: test_sign_in.py.)


def test_a_failing_model_list_is_shown_not_a_blank_page(page, stack):
    page.route(
        re.compile(r".*/models$"),
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"code": "unavailable", "message": "The model store cannot be read.", "details": []}}',
        ),
    )
    page.goto(stack["url"] + "/")
    sign_in(page, "no-group")
    expect(page.locator("#page-error")).to_contain_text("503 Unavailable: The model store cannot be read.")
    expect(page.locator("#page-error")).to_have_attribute("role", "alert")
    expect(page.locator("#notice")).to_be_visible()
    page.shot()


def test_an_ml_admin_starts_a_manual_retraining_job_and_follows_it_until_it_ends(page, stack):
    open_model(page, stack, "chest-ct", user="ml-admin")
    expect(page.locator("#user-groups")).to_have_text("ml-admins")
    expect(page.locator("#user-rights")).to_contain_text("may start retraining")
    expect(page.locator("#retrain-permission")).to_be_hidden()
    page.fill("#retrain-reason", "browser test")
    page.click("#retrain-button")
    status = page.locator("#retrain-status")
    expect(status).to_contain_text(re.compile(r"202 Accepted: Job chest-ct-\S+ started"))
    job_id = re.search(r"Job (\S+) started", status.inner_text()).group(1)
    row = page.locator(f"#jobs-body tr[data-job='{job_id}']")
    expect(row).to_contain_text("manual")
    expect(row).to_contain_text("browser test")
    expect(page.locator("#jobs-status")).to_contain_text(f"Job {job_id} is")  # polling while it runs
    page.shot("-running")
    expect(row.locator(".state")).to_have_text(re.compile("Completed|Failed|Stopped"), timeout=300_000)
    expect(row.locator(".state")).to_have_text("Completed")
    expect(row).to_contain_text(re.compile("promoted|rejected"))
    job = stack["http"].get(f"{stack['url']}/models/chest-ct/retrain/{job_id}", timeout=30).json()
    serving = job["version"] if job["outcome"] == "promoted" else job["production_version"]
    expect(page.locator("#model-facts")).to_contain_text(serving)  # the details follow a promotion
    expect(page.locator("#jobs-status")).to_be_empty()  # polling stopped
    # The tokens stay in the page's memory: nothing in storage or cookies.
    assert page.evaluate("() => [localStorage.length, sessionStorage.length, document.cookie]") == [0, 0, ""]
    assert page.context.cookies() == []
    page.shot()


def test_phone_width_has_no_horizontal_scroll(phone_page, stack):
    page = phone_page
    for model in ("breast-cancer", "chest-ct"):
        open_model(page, stack, model, user="ml-admin")
        if model == "chest-ct":
            expect(page.locator("#retrain-section")).to_be_visible()
        width = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (model, width)
        columns = page.locator("#feature-grid" if model == "breast-cancer" else "#retrain-section").evaluate(
            "el => el.getBoundingClientRect().width"
        )
        assert columns <= 375
        page.shot(f"-{model}")


def test_the_page_works_under_an_api_gateway_stage_path(page, stack):
    """On AWS the page is https://<api>/v1 or /v1/: every API URL must stay under the stage."""
    seen = []

    def stage(route):  # plays API Gateway: /v1/<path> is the API's /<path>
        seen.append(route.request.url)
        path = re.sub(r"^/v1/?", "/", route.request.url.split(str(stack["url"]), 1)[1])
        route.fulfill(response=route.fetch(url=stack["url"] + path))

    page.route(re.compile(re.escape(stack["url"]) + r"/v1(/.*)?$"), stage)
    page.route(re.compile(re.escape(stack["url"]) + r"/(?!v1).*"), lambda route: route.abort())  # outside the stage
    # Served through route.fulfill, the page has no loopback address of its own, so Chromium's Local Network
    # Access asks before the page may reach Cognito (moto) on 127.0.0.1: on AWS both are public.
    page.context.grant_permissions(["local-network-access"], origin=stack["url"])
    page.goto(stack["url"] + "/v1")  # no trailing slash
    sign_in(page, "clinician")  # auth/config under the stage; Cognito (moto) is another origin
    expect(page.locator("#model-select option")).to_have_count(4)
    page.click("#tabular-predict")
    expect(page.locator(".predicted-label")).to_have_text("malignant")
    assert page.locator("#docs-link").get_attribute("href") == stack["url"] + "/v1/docs"
    assert any(url.endswith("/v1/models/breast-cancer/predict") for url in seen)
    assert any(url.endswith("/v1/auth/config") for url in seen)
    page.shot()
