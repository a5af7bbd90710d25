"""Signing in on the web page (Amazon Cognito; moto locally) in real Chromium, CSP on: signed out,
a wrong password, a first sign-in with a temporary password, what each group may do, sign-out,
a 401 and an expired sign-in, and that no token is ever stored. NOT FOR CLINICAL USE."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from scripts.local_cognito import DEMO_USERS
from scripts.local_stack import aws_client
from tests.browser.helpers import IMAGES, claims, model_view, open_model, sign_in


def api_requests(page) -> list:
    """Every request the page sends to the API (not to Cognito or S3), as it is sent."""
    seen: list = []
    page.on("request", lambda request: seen.append(request) if "/models" in request.url else None)
    return seen


def test_signed_out_the_page_loads_and_asks_to_sign_in(page, stack):
    requests = api_requests(page)
    page.goto(stack["url"] + "/")
    expect(page).to_have_title(re.compile("NOT FOR CLINICAL USE"))
    expect(page.locator("#notice")).to_contain_text("NOT FOR CLINICAL USE")
    expect(page.locator("footer")).to_contain_text("NOT FOR CLINICAL USE")
    expect(page.locator("#auth-heading")).to_have_text("Sign in")
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#sign-in-button")).to_be_enabled()  # GET /auth/config (open) answered
    expect(page.locator("#signed-in")).to_be_hidden()
    # No model list, no predict, upload or retrain controls: each says that sign-in is needed.
    expect(page.locator("#model-select")).to_be_disabled()
    expect(page.locator("#model-select option")).to_have_text(["Sign in to see the models"])
    expect(page.locator("#model-status")).to_contain_text("Sign in")
    expect(page.locator("#predict-signin")).to_be_visible()
    expect(page.locator("#predict-signin")).to_contain_text("Sign in")
    expect(page.locator("#tabular-form")).to_be_hidden()
    expect(page.locator("#image-form")).to_be_hidden()
    expect(page.locator("#upload-section")).to_be_hidden()
    expect(page.locator("#retrain-section")).to_be_hidden()
    expect(page.locator("#page-error")).to_be_empty()
    # A predict forced anyway is refused by the page itself (no request goes out) ...
    page.locator("#tabular-form").evaluate("form => form.requestSubmit()")
    expect(page.locator("#predict-error")).to_contain_text("Sign in first")
    assert requests == []
    # ... and the API agrees: open routes answer, the model list needs a token.
    statuses = page.evaluate("""async () => Promise.all(['health', 'auth/config', 'models']
        .map(async (path) => (await fetch(path)).status))""")
    assert statuses == [200, 200, 401]
    # By keyboard: the skip link first, then the email field.
    page.locator("body").focus()
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#sign-in-email")).to_be_focused()
    page.shot()


def test_a_wrong_password_shows_cognitos_message(page, stack):
    page.goto(stack["url"] + "/")
    page.fill("#sign-in-email", DEMO_USERS["clinician"].username)
    page.fill("#sign-in-password", "Not-the-password-1")
    page.click("#sign-in-button")
    error = page.locator("#auth-error")
    expect(error).to_contain_text("Sign-in failed: Incorrect username or password.")
    expect(error).to_have_attribute("role", "alert")
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#signed-in")).to_be_hidden()
    expect(page.locator("#model-select")).to_be_disabled()
    expect(page.locator("#sign-in-password")).to_be_focused()
    # An empty form is not even sent.
    page.fill("#sign-in-password", "")
    page.click("#sign-in-button")
    expect(error).to_contain_text("Enter your email address and your password.")
    page.shot()


def test_a_clinician_predicts_and_uploads_but_cannot_retrain(page, stack):
    clinician = DEMO_USERS["clinician"]
    sub = claims(stack["tokens"]["clinician"])["sub"]
    requests = api_requests(page)
    open_model(page, stack, "skin-lesion", user="clinician")
    expect(page.locator("#auth-heading")).to_have_text("Signed in")
    expect(page.locator("#user-email")).to_have_text(clinician.username)
    expect(page.locator("#user-groups")).to_have_text("clinicians")
    rights = page.locator("#user-rights li")
    expect(rights).to_have_text(
        [
            "You may predict and view models.",
            "You may upload labelled images.",
            re.compile("You may not start retraining .*ml-admins"),
        ]
    )
    expect(page.locator("#predict-signin")).to_be_hidden()
    # Every API call carries the raw ID token (no "Bearer") of the clinician.
    sent = requests[0].headers["authorization"]
    assert not sent.startswith("Bearer") and claims(sent)["sub"] == sub and claims(sent)["email"] == clinician.username
    # Predict.
    page.set_input_files("#image-files", str(IMAGES / "skin-lesion-mel.png"))
    page.click("#image-predict")
    expect(page.locator(".predicted-label")).to_have_text("mel")
    # Upload a labelled image: the ticket is a 201, the object lands under uploads/ with the uploader's sub.
    expect(page.locator("#upload-section")).to_be_visible()
    expect(page.locator("#upload-button")).to_be_enabled()
    expect(page.locator("#upload-permission")).to_be_hidden()
    bucket = stack["env"]["UPLOADS_BUCKET"]
    prefix = "uploads/skin-lesion/mel/"

    def keys() -> set[str]:
        return {o["Key"] for o in stack["s3"].list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}

    before = keys()
    page.select_option("#upload-label", "mel")
    page.set_input_files("#upload-files", str(IMAGES / "skin-lesion-mel.png"))
    with page.expect_response(re.compile(r".*/models/skin-lesion/uploads$")) as ticket:
        page.click("#upload-button")
    assert ticket.value.status == 201, ticket.value.text()
    assert "authorization" not in {k.lower() for k in ticket.value.json()["fields"]}
    expect(page.locator("#upload-list .ok")).to_have_text("Uploaded")
    expect(page.locator("#upload-error")).to_be_empty()
    [key] = keys() - before
    head = stack["s3"].head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["uploader"] == sub, head["Metadata"]
    page.shot("-uploaded")
    # Retraining: the counter and jobs are visible, starting a job is not.
    expect(page.locator("#retrain-section")).to_be_visible()
    expect(page.locator("#retrain-button")).to_be_disabled()
    expect(page.locator("#retrain-reason")).to_be_disabled()
    expect(page.locator("#retrain-permission")).to_contain_text("needs the ml-admins group")
    # Forced anyway: the API's 403 and its message.
    page.locator("#retrain-button").evaluate("button => { button.disabled = false; }")
    with page.expect_response(re.compile(r".*/models/skin-lesion/retrain$")) as refused:
        page.click("#retrain-button")
    assert refused.value.status == 403
    message = refused.value.json()["error"]["message"]
    expect(page.locator("#retrain-error")).to_contain_text("403 Forbidden")
    expect(page.locator("#retrain-error")).to_contain_text(message.rstrip("."))
    expect(page.locator("#retrain-button")).to_be_disabled()  # back to disabled
    expect(page.locator("#user-email")).to_have_text(clinician.username)  # a 403 does not sign out
    page.shot()


def test_a_user_in_no_group_may_predict_but_not_upload(page, stack):
    open_model(page, stack, "chest-ct", user="no-group")
    expect(page.locator("#user-groups")).to_have_text("none")
    expect(page.locator("#user-rights li")).to_have_text(
        [
            "You may predict and view models.",
            re.compile("You may not upload labelled images"),
            re.compile("You may not start retraining"),
        ]
    )
    page.set_input_files("#image-files", str(IMAGES / "chest-ct-normal.png"))
    page.click("#image-predict")
    expect(page.locator(".predicted-label")).to_have_text("normal")
    expect(page.locator("#upload-permission")).to_contain_text("needs the clinicians or ml-admins group")
    for control in ("#upload-button", "#upload-files", "#upload-label", "#retrain-button"):
        expect(page.locator(control)).to_be_disabled()
    # Forced anyway: the upload ticket is refused (403) with the API's message.
    page.evaluate("""() => ['upload-label', 'upload-files', 'upload-button']
        .forEach((id) => { document.getElementById(id).disabled = false; })""")
    page.select_option("#upload-label", "normal")
    page.set_input_files("#upload-files", str(IMAGES / "chest-ct-normal.png"))
    page.click("#upload-button")
    expect(page.locator("#upload-error")).to_contain_text("403 Forbidden")
    expect(page.locator("#upload-list li")).to_contain_text("Failed")
    expect(page.locator("#upload-button")).to_be_disabled()
    page.shot()


def test_sign_out_forgets_the_user_and_the_next_action_needs_sign_in(page, stack):
    requests = api_requests(page)
    open_model(page, stack, "breast-cancer", user="clinician")
    page.click("#tabular-predict")
    expect(page.locator(".predicted-label")).to_have_text("malignant")
    page.click("#sign-out-button")
    expect(page.locator("#auth-status")).to_contain_text("Signed out")
    expect(page.locator("#signed-in")).to_be_hidden()
    expect(page.locator("#user-email")).to_be_empty()
    expect(page.locator("#user-groups")).to_be_empty()
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#sign-in-email")).to_be_focused()
    # What the API showed is gone with the user.
    expect(page.locator("#model-select")).to_be_disabled()
    expect(page.locator("#model-details")).to_be_empty()
    expect(page.locator("#predict-result")).to_be_empty()
    expect(page.locator("#tabular-form")).to_be_hidden()
    expect(page.locator("#predict-signin")).to_be_visible()
    page.shot("-signed-out")
    # The next API action needs sign-in again: refused on the page, nothing sent.
    sent = len(requests)
    page.locator("#tabular-form").evaluate("form => form.requestSubmit()")
    expect(page.locator("#predict-error")).to_contain_text("Sign in first")
    assert len(requests) == sent
    # Signing in again (as someone else) works, with that user's rights.
    sign_in(page, "ml-admin")
    expect(page.locator("#user-groups")).to_have_text("ml-admins")
    expect(page.locator("#model-select")).to_have_value("breast-cancer")  # the address still names it
    # As open_model does: the model's view has arrived (its production version is shown) before predicting.
    expect(page.locator("#model-facts")).to_contain_text(model_view(stack, "breast-cancer")["production_version"])
    page.click("#tabular-predict")
    expect(page.locator(".predicted-label")).to_have_text("malignant")
    assert claims(requests[-1].headers["authorization"])["email"] == DEMO_USERS["ml-admin"].username
    page.shot()


def test_tokens_are_kept_in_memory_only(page, stack):
    requests = api_requests(page)
    open_model(page, stack, "breast-cancer-lite", user="clinician")
    page.click("#tabular-predict")
    expect(page.locator(".predicted-label")).to_have_count(1)
    token = requests[-1].headers["authorization"]
    assert token.count(".") == 2
    stored = page.evaluate(
        """() => [localStorage.length, sessionStorage.length, document.cookie,
                  Object.keys(window).filter((k) => /token|auth/i.test(k))]"""
    )
    assert stored == [0, 0, "", []]
    assert page.context.cookies() == []
    assert token not in page.content()  # not in the DOM either
    assert page.locator("#sign-in-password").input_value() == ""
    # A reload forgets the sign-in.
    page.reload()
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#model-select")).to_be_disabled()
    page.shot()


def test_a_temporary_password_must_be_changed_at_the_first_sign_in(page, stack):
    cognito = aws_client("cognito-idp", stack["moto_url"])
    pool_id = stack["user_pool"].pool_id
    email = f"new-clinician-{int(time.time() * 1000)}@example.org"
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=email,
        TemporaryPassword="Temporary-pass-2026",
        UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
        MessageAction="SUPPRESS",
    )
    cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=email, GroupName="clinicians")
    page.goto(stack["url"] + "/")
    page.fill("#sign-in-email", email)
    page.fill("#sign-in-password", "Temporary-pass-2026")
    page.click("#sign-in-button")
    expect(page.locator("#new-password-form")).to_be_visible()
    expect(page.locator("#sign-in-form")).to_be_hidden()
    expect(page.locator("#new-password")).to_be_focused()
    expect(page.locator("#auth-status")).to_contain_text("Choose a new password")
    page.shot("-challenge")
    page.fill("#new-password", "Chosen-password-2026")
    page.fill("#new-password-repeat", "Chosen-password-2027")
    page.click("#new-password-button")
    expect(page.locator("#auth-error")).to_contain_text("The two new passwords differ")
    page.fill("#new-password-repeat", "Chosen-password-2026")
    page.click("#new-password-button")
    expect(page.locator("#user-email")).to_have_text(email)
    expect(page.locator("#user-groups")).to_have_text("clinicians")
    expect(page.locator("#new-password-form")).to_be_hidden()
    expect(page.locator("#auth-error")).to_be_empty()
    expect(page.locator("#model-select option")).to_have_count(4)
    # The new password is the one now.
    status = cognito.admin_get_user(UserPoolId=pool_id, Username=email)["UserStatus"]
    assert status == "CONFIRMED"
    page.shot()


def test_a_401_from_the_api_signs_out_with_a_message(page, stack):
    open_model(page, stack, "breast-cancer", user="clinician")
    page.route(
        "**/models/breast-cancer/predict",
        lambda route: route.fulfill(status=401, content_type="application/json", body='{"message": "Unauthorized"}'),
    )
    page.click("#tabular-predict")
    expect(page.locator("#auth-error")).to_contain_text("401 Unauthorized: the API did not accept your sign-in")
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#signed-in")).to_be_hidden()
    expect(page.locator("#model-select")).to_be_disabled()
    page.shot()


def test_an_expired_sign_in_signs_out_with_a_message(page, stack):
    requests = api_requests(page)
    page.clock.install()  # the page's clock, so an hour can pass at once
    open_model(page, stack, "breast-cancer", user="clinician")
    expires = claims(requests[-1].headers["authorization"])["exp"]  # the token the page signed in with
    expect(page.locator("#session-expiry")).not_to_be_empty()
    page.clock.fast_forward(int((expires - time.time() + 60) * 1000))
    expect(page.locator("#auth-error")).to_contain_text("Your sign-in expired at")
    expect(page.locator("#auth-error")).to_contain_text("Sign in again")
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#model-select")).to_be_disabled()
    page.shot()
