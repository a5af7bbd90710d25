"""GET / on the predict function: the web page, with a Content-Security-Policy that
allows its own inline code, this API and the uploads endpoint, and nothing else."""

import base64
import hashlib
import json
import re

import pytest

from tests.helpers.models import REPO_ROOT, LambdaContext, load_function_module

PAGE_FILE = REPO_ROOT / "functions" / "predict" / "static" / "index.html"


@pytest.fixture
def handler(monkeypatch):
    monkeypatch.setenv("MODELS_BUCKET", "unused-by-the-page")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    module = load_function_module("predict")
    return lambda event: module.lambda_handler(event, LambdaContext())


def page_event() -> dict:
    return json.loads((REPO_ROOT / "events" / "api-page.json").read_text())


def header(response: dict, name: str) -> str:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
    return headers.get(name.lower()) or ", ".join(multi.get(name.lower(), []))


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def sha256_source(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()
    return f"'sha256-{digest}'"


def inline(tag: str, html: str) -> str:
    (text,) = re.findall(rf"^<{tag}>\n(.*?)^</{tag}>$", html, re.DOTALL | re.MULTILINE)
    return "\n" + text


def test_the_page_is_html_with_the_notice_and_a_strict_policy(handler, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5005")
    response = handler(page_event())
    assert response["statusCode"] == 200
    assert header(response, "Content-Type").startswith("text/html")
    html = response["body"]
    assert not response.get("isBase64Encoded")
    assert html == PAGE_FILE.read_text(encoding="utf-8")
    assert "<title>Medical classifier — NOT FOR CLINICAL USE</title>" in html
    assert re.search(r'id="notice"[^>]*><strong>NOT FOR CLINICAL USE\.</strong>', html)
    policy = directives(header(response, "Content-Security-Policy"))
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == [sha256_source(inline("script", html))]
    assert policy["style-src"] == [sha256_source(inline("style", html))]
    assert policy["connect-src"] == ["'self'", "http://127.0.0.1:5005"]  # the API and moto's presigned POSTs
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "unsafe" not in header(response, "Content-Security-Policy")
    assert header(response, "X-Content-Type-Options") == "nosniff"


def test_on_aws_uploads_may_go_to_s3_hosts_only(handler, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")  # the template's default on AWS
    policy = directives(header(handler(page_event()), "Content-Security-Policy"))
    assert policy["connect-src"] == ["'self'", "https://*.amazonaws.com"]


def test_the_page_loads_nothing_from_other_hosts_and_calls_the_api_by_relative_urls():
    html = PAGE_FILE.read_text(encoding="utf-8")
    # Nothing from another host: no CDN, no fonts, no analytics.
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html)
    assert not re.search(r"""@import|url\(\s*["']?(https?:)?//""", html)
    # API URLs are relative to the page (which may be /v1/ on API Gateway), never absolute paths.
    assert not re.search(r"""["'`]/(models|health|docs|openapi)""", html)
    assert "new URL(path, BASE)" in html


def test_the_page_is_documented_in_the_api_spec_as_html(handler):
    event = page_event()
    event.update(path="/openapi.json", resource="/openapi.json")
    spec = json.loads(handler(event)["body"])
    assert list(spec["paths"]["/"]) == ["get"] and "/models/{model}/predict" in spec["paths"]
    page = spec["paths"]["/"]["get"]
    assert page["operationId"] == "Page" and "security" not in page  # open to everyone
    assert page["responses"] == {
        "200": {
            "description": "The page (served with a strict Content-Security-Policy)",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    }
