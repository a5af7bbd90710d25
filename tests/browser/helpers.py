"""What the browser tests share: signing in through the page's own form (the tokens live in the
page's memory only, so every test signs in), opening a model, reading a token's claims."""

from __future__ import annotations

import base64
import json

from playwright.sync_api import expect

from scripts.local_cognito import DEMO_USERS
from tests.helpers.models import REPO_ROOT

IMAGES = REPO_ROOT / "events" / "images"
MODELS = ["breast-cancer", "breast-cancer-lite", "chest-ct", "skin-lesion"]


def claims(token: str) -> dict:
    """The payload of a JWT (not verified: for comparing with what the page shows)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def model_view(stack, model: str) -> dict:
    response = stack["http"].get(f"{stack['url']}/models/{model}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def sign_in(page, user: str = "clinician") -> None:
    """Signs a demo user (scripts/local_cognito.py) in with the page's form: InitiateAuth against moto."""
    demo = DEMO_USERS[user]
    page.fill("#sign-in-email", demo.username)
    page.fill("#sign-in-password", demo.password)
    page.click("#sign-in-button")
    expect(page.locator("#user-email")).to_have_text(demo.username)
    expect(page.locator("#sign-in-form")).to_be_hidden()


def open_model(page, stack, model: str, user: str = "clinician") -> None:
    page.goto("about:blank")  # a fresh page even when only the #model= part changes: signed out again
    page.goto(f"{stack['url']}/#model={model}")
    sign_in(page, user)
    expect(page.locator("#model-select")).to_have_value(model)
    expect(page.locator("#model-facts")).to_contain_text(model_view(stack, model)["production_version"])
