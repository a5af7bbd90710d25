"""Upload labelled images for retraining, the way any client does: ask the API for a
presigned POST per image, then POST the image straight to S3 with that form.

    python -m scripts.upload_labelled --model chest-ct --label normal image1.png image2.jpg
    python -m scripts.upload_labelled --model chest-ct --label normal --copies 5 events/images/chest-ct-normal.png

Uploads need a signed-in clinician or ml-admin: --token (default $MED_CLASSIFIER_TOKEN) is sent as the
Authorization header of the API requests (never to S3); without one, the local stack's demo user --user
(default clinician) signs in. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import argparse
import mimetypes
import sys
from pathlib import Path

import requests

from training.settings import training_settings

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def upload(session: requests.Session, api: str, model: str, label: str, path: Path, token: str) -> str:
    """Uploads one image; returns its S3 key. Raises RuntimeError with the API's or S3's message."""
    content_type = CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or ""
    ticket = session.post(
        f"{api}/models/{model}/uploads",
        json={"label": label, "content_type": content_type},
        headers={"Authorization": token},
        timeout=30,
    )
    if ticket.status_code != 201:
        raise RuntimeError(f"{path}: {ticket.status_code} {ticket.json().get('error', {}).get('message', ticket.text)}")
    form = ticket.json()
    with path.open("rb") as image:
        # S3 wants the policy fields first and the file last.
        stored = session.post(
            form["url"], data=form["fields"], files={"file": (path.name, image, content_type)}, timeout=60
        )
    if stored.status_code not in (200, 201, 204):
        raise RuntimeError(f"{path}: S3 refused the upload ({stored.status_code}): {stored.text[:300]}")
    return form["key"]


def local_demo_token(user: str) -> str:
    from scripts.local_cognito import demo_token

    return demo_token(user, training_settings().local_state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:3000", help="API base URL (default: %(default)s)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--label", required=True, help="the images' class, one of the model's classes")
    parser.add_argument("--copies", type=int, default=1, help="upload each image this many times (demos)")
    parser.add_argument("--token", default=training_settings().med_classifier_token, help="a Cognito ID token")
    parser.add_argument("--user", default="clinician", help="without --token: the local demo user to sign in as")
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args(argv)
    token = args.token or local_demo_token(args.user)
    failed = 0
    with requests.Session() as session:
        for path in args.images:
            for _ in range(max(1, args.copies)):
                try:
                    print(f"{path} -> {upload(session, args.api.rstrip('/'), args.model, args.label, path, token)}")
                except (RuntimeError, OSError, requests.RequestException) as exc:
                    print(f"FAILED {exc}", file=sys.stderr)
                    failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
