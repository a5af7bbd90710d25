"""The web page's response headers: a Content-Security-Policy that allows only the page's own
inline <script> and <style> (by hash), this API, and the uploads endpoint."""

from __future__ import annotations

import base64
import functools
import hashlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response


class _InlineBlocks(HTMLParser):
    """The text of each inline <script> and <style> element, as the browser hashes it."""

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.blocks: list[tuple[str, str]] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style") and not dict(attrs).get("src"):
            self._open = tag
            self.blocks.append((tag, ""))

    def handle_data(self, data):
        if self._open:
            tag, text = self.blocks[-1]
            self.blocks[-1] = (tag, text + data)

    def handle_endtag(self, tag):
        if tag == self._open:
            self._open = None


def upload_origin(endpoint_url: str | None) -> str:
    """Where the page's presigned POSTs go. Locally the endpoint override (moto);
    on AWS an S3 host under amazonaws.com, virtual-hosted or path style, global or
    regional as botocore picks, so the whole domain is allowed: the signed policy and
    the bucket, not this header, decide what may be written."""
    endpoint = urlsplit(endpoint_url or "")
    return (
        f"{endpoint.scheme}://{endpoint.netloc}" if endpoint.scheme and endpoint.netloc else "https://*.amazonaws.com"
    )


def content_security_policy(html: str, uploads: str) -> str:
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    parser = _InlineBlocks()
    parser.feed(html)
    parser.close()
    for tag, body in parser.blocks:
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + (" ".join(hashes["script"]) or "'none'"),
            "style-src " + (" ".join(hashes["style"]) or "'none'"),
            "img-src 'self' blob: data:",  # previews of the chosen images; the empty favicon
            f"connect-src 'self' {uploads}",
            "base-uri 'none'",
            "form-action 'none'",  # every form is sent by script
            "frame-ancestors 'none'",
        ]
    )


PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


@functools.cache
def _page(path: Path, endpoint_url: str | None) -> tuple[str, str]:
    html = path.read_text(encoding="utf-8")
    return html, content_security_policy(html, upload_origin(endpoint_url))


def page_response(path: Path, endpoint_url: str | None) -> Response:
    """The page at `path` with its headers (read and hashed once per container)."""
    html, policy = _page(path, endpoint_url)
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=html,
        headers={"Content-Security-Policy": policy, **PAGE_HEADERS},
    )
