"""Replay a drifted input stream into a running local API (`make run`, or the e2e tests' stack), wait for
the drift monitor's next report and print it (README, "Drift monitoring").

    .venv/bin/python -m scripts.replay_drift                 # make run on 127.0.0.1:3000, signs in as the clinician
    .venv/bin/python -m scripts.replay_drift --rows 400 --images 64 --wait 180

The stream: breast-cancer rows drawn 90 % from the malignant class (a skewed class mix) with every size
feature (radius, perimeter, area) scaled by 1.5, and skin-lesion and chest-ct example images brightened
by 1.8. The predict functions capture them (CaptureSampleRate 1 locally), the drift monitor runs every
minute under `make run`, and this script polls GET /models/{model}/drift until a report generated after
the stream's end is there. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from training.settings import training_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
TABULAR_MODEL = "breast-cancer"
IMAGE_MODELS = ("skin-lesion", "chest-ct")
SIZE_FEATURES = ("radius", "perimeter", "area")
SIZE_SCALE = 1.5
MALIGNANT_SHARE = 0.9
BRIGHTNESS = 1.8


def drifted_rows(n: int, seed: int = 16) -> list[list[float]]:
    """Breast-cancer rows (the Wisconsin data set's feature order), mostly malignant, size features scaled."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    malignant, benign = np.flatnonzero(data.target == 0), np.flatnonzero(data.target == 1)
    n_malignant = round(n * MALIGNANT_SHARE)
    picked = np.concatenate([rng.choice(malignant, n_malignant), rng.choice(benign, n - n_malignant)])
    rows = data.data[rng.permutation(picked)].copy()
    scaled = [i for i, name in enumerate(data.feature_names) if any(word in name for word in SIZE_FEATURES)]
    rows[:, scaled] *= SIZE_SCALE
    return rows.round(4).tolist()


def brightened_images(model: str, factor: float = BRIGHTNESS) -> list[bytes]:
    """The model's example images (events/images), brighter, as PNG files."""
    from PIL import Image, ImageEnhance

    images = []
    for path in sorted((REPO_ROOT / "events" / "images").glob(f"{model}-*.png")):
        with Image.open(path) as image:
            out = io.BytesIO()
            ImageEnhance.Brightness(image.convert("RGB")).enhance(factor).save(out, format="PNG")
            images.append(out.getvalue())
    return images


def send_rows(session: requests.Session, api: str, rows: list[list[float]], per_request: int) -> int:
    for start in range(0, len(rows), per_request):
        answer = session.post(
            f"{api}/models/{TABULAR_MODEL}/predict", json={"instances": rows[start : start + per_request]}, timeout=60
        )
        answer.raise_for_status()
    return len(rows)


def send_images(session: requests.Session, api: str, model: str, n: int, per_request: int) -> int:
    import base64

    examples = brightened_images(model)
    stream = [examples[i % len(examples)] for i in range(n)]
    for start in range(0, n, per_request):
        body = {"images": [base64.b64encode(image).decode() for image in stream[start : start + per_request]]}
        session.post(f"{api}/models/{model}/predict", json=body, timeout=60).raise_for_status()
    return n


def latest_report(session: requests.Session, api: str, model: str) -> dict | None:
    answer = session.get(f"{api}/models/{model}/drift", timeout=30)
    if answer.status_code == 404 and answer.json().get("error", {}).get("code") == "no_drift_report":
        return None
    answer.raise_for_status()
    return answer.json()


def wait_for_report(session: requests.Session, api: str, model: str, after: datetime, wait: float) -> dict | None:
    """The first report generated after `after`, polling until `wait` seconds have passed (None then)."""
    deadline = time.monotonic() + wait
    while True:
        report = latest_report(session, api, model)
        if report is not None and datetime.fromisoformat(report["generated_at"]) > after:
            return report
        if time.monotonic() >= deadline:
            return None
        time.sleep(2.0)


def format_report(report: dict, top: int = 5) -> str:
    mix = report.get("class_mix")
    ood = report.get("ood_rate")
    lines = [
        f"{report['model']}: {report['status'].upper()}  ({report['n_records']} captured predictions, "
        f"window {report['window_start']} .. {report['window_end']})",
        "  class mix: "
        + (
            f"PSI {mix['psi']:.3f}, total variation {mix['total_variation']:.3f}; "
            + ", ".join(f"{c} {mix['observed'][c]:.2f} (training {mix['expected'][c]:.2f})" for c in mix["observed"])
            if mix
            else "no reference"
        ),
        "  OOD rate: " + (f"{ood:.1%} ({report['n_ood_flagged']} flagged)" if ood is not None else "no flags"),
    ]
    if report["features"]:
        lines += [
            "  | feature | PSI |",
            "  | --- | --- |",
            *(f"  | {f['name']} | {f['psi']:.3f} |" for f in report["features"][:top]),
            f"  drifted features (PSI >= {report['thresholds']['psi_drift']}): {len(report['drifted_features'])} "
            f"of {len(report['features'])}",
        ]
    else:
        lines.append("  features: " + "; ".join(report["reasons"]) if report["reasons"] else "  features: none")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:3000", help="API base URL (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=400, help="breast-cancer rows to send")
    parser.add_argument("--rows-per-request", type=int, default=20)
    parser.add_argument("--images", type=int, default=48, help="images to send to each image model")
    parser.add_argument("--images-per-request", type=int, default=8)
    parser.add_argument("--wait", type=float, default=150.0, help="seconds to wait for the drift monitor's report")
    parser.add_argument("--token", default=training_settings().med_classifier_token, help="a Cognito ID token")
    parser.add_argument("--user", default="clinician", help="without --token: the local demo user to sign in as")
    args = parser.parse_args(argv)
    api = args.api.rstrip("/")
    if args.token:
        token = args.token
    else:
        from scripts.local_cognito import demo_token

        token = demo_token(args.user, training_settings().local_state_dir)
    with requests.Session() as session:
        session.headers["Authorization"] = token
        sent = {TABULAR_MODEL: send_rows(session, api, drifted_rows(args.rows), args.rows_per_request)}
        for model in IMAGE_MODELS if args.images else ():
            sent[model] = send_images(session, api, model, args.images, args.images_per_request)
        ended = datetime.now(UTC)
        print(f"sent {sent} at {ended.isoformat()}; waiting up to {args.wait:.0f} s for the drift monitor's reports")
        missing = 0
        for model in sent:
            report = wait_for_report(session, api, model, ended, args.wait)
            if report is None:
                print(f"{model}: no report generated after the stream within {args.wait:.0f} s", file=sys.stderr)
                missing += 1
            else:
                print(format_report(report))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
