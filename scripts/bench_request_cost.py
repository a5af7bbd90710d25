"""Cost per request: the most expensive image requests a client can send within the limits, timed.

Each case is a request built to cost as much as the limits allow one way: pixels that are dear to
decode (transparent, 16-bit, palette, rotated PNGs; progressive JPEGs of the most scans accepted),
bytes that are dear to decode (noise JPEGs filling the body, the largest JPEG Pillow opens), parts
that are dear to walk (PNG chunks, JPEG segments, EXIF entries), or a body dear to check (escaped
quotes, nesting, digits). The limits are read from the settings defaults (the template's). Every
case is timed against both image models (skin-lesion: 96x96 RGB; chest-ct: 128x128 grayscale),
smoke-trained here, through the image function's handler in this process (API Gateway event in,
response out, warm), and with --http also over loopback HTTP through the Docker-free local runner.
A benchmark, not a test: it prints a table and asserts no timing. NOT FOR CLINICAL USE.

    .venv/bin/python -m scripts.bench_request_cost [--runs 5] [--http] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import math
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import requests
from PIL import Image, ImageFile

from med_classifier.domain.image_files import MAX_JPEG_SCANS, MAX_PNG_CHUNKS
from med_classifier.settings import ImagePredictSettings
from scripts.bench import env_vars_file, fmt_time, function_environment, local_api, machine_line, progress
from scripts.local_stack import MotoServer, free_port, s3_client
from tests.helpers.models import LambdaContext, load_function_module, publish

REPO_ROOT = Path(__file__).resolve().parent.parent
EVENT_TEMPLATE = REPO_ROOT / "events" / "api-predict-breast-cancer.json"
BUCKET = "med-classifier-models-bench-cost"
MODELS = ("skin-lesion", "chest-ct")
TARGET_S = 1.0
# Pillow sizes its output buffer for a progressive JPEG from the pixel count: noise needs more.
ImageFile.MAXBLOCK = 64 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    image_pixels: int
    request_pixels: int
    images: int
    image_bytes: int
    body_bytes: int

    @classmethod
    def defaults(cls) -> Limits:
        s = ImagePredictSettings(models_bucket="-")
        return cls(
            s.max_image_pixels, s.max_request_pixels, s.max_images_per_request, s.max_image_bytes, s.max_request_bytes
        )


@dataclass(frozen=True)
class Case:
    name: str
    content_type: str
    body: bytes
    images: int
    expected: int = 200  # the status the limits give it

    @classmethod
    def json_images(cls, name: str, images: list[bytes], expected: int = 200) -> Case:
        encoded = [base64.b64encode(image).decode() for image in images]
        return cls(name, "application/json", json.dumps({"images": encoded}).encode(), len(images), expected)


# --- files that are dear to decode ----------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def side(pixels: int) -> int:
    return math.isqrt(pixels)


def transparent_png(size: int) -> bytes:
    return encoded(Image.new("RGBA", (size, size), (0, 0, 0, 0)), optimize=True)


def sixteen_bit_png(size: int) -> bytes:
    return encoded(Image.new("I;16", (size, size), 1000))


def palette_png(size: int) -> bytes:
    return encoded(Image.new("P", (size, size), 0), transparency=0)


def rotated_png(size: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate on display: the decoder transposes the whole image
    return encoded(Image.new("RGBA", (size, size), (0, 0, 0, 0)), exif=exif.tobytes())


def noise_jpeg(size: int, progressive: bool = False) -> bytes:
    pixels = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encoded(Image.fromarray(pixels), "JPEG", quality=100, subsampling=0, progressive=progressive)


def many_scan_jpeg(size: int, scans: int) -> bytes:
    """A flat 4:4:4 progressive JPEG whose first scan (all components, DC) is repeated up to `scans`."""
    data = encoded(Image.new("RGB", (size, size)), "JPEG", quality=1, subsampling=0, progressive=True)
    first = data.index(b"\xff\xda")
    second = data.index(b"\xff\xda", first + 2)
    extra = scans - data.count(b"\xff\xda")
    return data[:second] + data[first:second] * extra + data[second:]


def largest_baseline_jpeg() -> bytes:
    """The largest JPEG Pillow opens (above MAX_IMAGE_PIXELS it refuses): decoded at 1/8 scale."""
    size = side(Image.MAX_IMAGE_PIXELS)
    return encoded(Image.new("RGB", (size, size)), "JPEG", quality=1)


def chunky_png(size: int, chunks: int) -> bytes:
    """A noise PNG whose pixel data is split into `chunks` IDAT chunks."""
    data = encoded(Image.fromarray(np.random.default_rng(1).integers(0, 256, (size, size), dtype=np.uint8)))
    parts, pos = {}, 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        parts[kind] = parts.get(kind, b"") + data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    idat, bounds = parts[b"IDAT"], [len(parts[b"IDAT"]) * i // chunks for i in range(chunks + 1)]
    body = b"".join(png_chunk(b"IDAT", idat[a:b]) for a, b in zip(bounds, bounds[1:]))
    return data[:8] + png_chunk(b"IHDR", parts[b"IHDR"]) + body + png_chunk(b"IEND", b"")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def big_exif_jpeg(size: int) -> bytes:
    """A JPEG whose EXIF holds the orientation among as many entries as one segment takes."""
    count = (65535 - 2 - 6 - 8 - 2 - 4) // 12
    entries = struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<HHII", 0x9000, 3, 1, 1) * (count - 1)
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, count) + entries + struct.pack("<I", 0)
    data = encoded(Image.new("RGB", (size, size)), "JPEG")
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + data[2:]


def jpeg_of_bytes(target: int, progressive: bool = False) -> bytes:
    """A noise JPEG of about `target` bytes (its size found by scaling a first guess)."""
    size = 256
    for _ in range(3):
        data = noise_jpeg(size, progressive)
        size = max(16, int(size * math.sqrt(target / len(data))))
    data = noise_jpeg(size, progressive)
    while len(data) > target:
        size = int(size * 0.97)
        data = noise_jpeg(size, progressive)
    return data


def decoded_pixels(data: bytes, model_side: int = 96) -> int:
    """The pixels a baseline JPEG decodes to at libjpeg's reduced scale (header only)."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (model_side, model_side))
    return image.size[0] * image.size[1]


# --- the cases --------------------------------------------------------------------------------------------


def pixel_cases(limits: Limits) -> list[Case]:
    """Pixels that are dear to decode, as many as the per-image and per-request limits allow."""
    per_request, full = limits.request_pixels // limits.image_pixels, side(limits.image_pixels)
    shared = side(limits.request_pixels // limits.images)
    n = limits.images
    return [
        Case("raw: 1 transparent PNG of MaxImagePixels", "image/png", transparent_png(full), 1),
        Case.json_images(f"{per_request} transparent PNGs of MaxImagePixels", [transparent_png(full)] * per_request),
        Case.json_images(f"{n} transparent PNGs sharing MaxRequestPixels", [transparent_png(shared)] * n),
        Case.json_images(f"{n} 16-bit grayscale PNGs sharing MaxRequestPixels", [sixteen_bit_png(shared)] * n),
        Case.json_images(f"{n} palette PNGs with transparency, shared", [palette_png(shared)] * n),
        Case.json_images(f"{n} EXIF-rotated transparent PNGs, shared", [rotated_png(shared)] * n),
        Case.json_images(
            f"{per_request} progressive JPEGs of {MAX_JPEG_SCANS} scans, MaxImagePixels",
            [many_scan_jpeg(full, MAX_JPEG_SCANS)] * per_request,
        ),
        Case.json_images(
            f"{n} progressive JPEGs of {MAX_JPEG_SCANS} scans, shared", [many_scan_jpeg(shared, MAX_JPEG_SCANS)] * n
        ),
    ]


def byte_cases(limits: Limits) -> list[Case]:
    """Bytes that are dear to decode or walk, as many as the body limit allows."""
    room = (limits.body_bytes - 4096) * 3 // 4  # image bytes a JSON body holds (base64: 4/3)
    n, large = limits.images, largest_baseline_jpeg()
    fit = min(n, room // len(large), limits.request_pixels // decoded_pixels(large))
    jpegs = [jpeg_of_bytes(room // 4)] * 4
    rest = limits.request_pixels - sum(decoded_pixels(j) for j in jpegs)
    return [
        Case.json_images(f"{n} noise JPEGs (q100, 4:4:4) filling the body", [jpeg_of_bytes(room // n)] * n),
        Case.json_images(f"{n} progressive noise JPEGs filling the body", [jpeg_of_bytes(room // n, True)] * n),
        Case("raw: the largest JPEG Pillow opens (flat, 1/8 scale)", "image/jpeg", large, 1),
        Case.json_images(f"{fit} of the largest JPEGs Pillow opens", [large] * fit),
        Case.json_images(
            f"mix: {n - 4} transparent PNGs + 4 noise JPEGs filling the body",
            [transparent_png(side(rest // (n - 4)))] * (n - 4) + jpegs,
        ),
        Case.json_images(
            f"{n} PNGs of {MAX_PNG_CHUNKS - 2} IDAT chunks",
            [chunky_png(side(room // n - 12 * MAX_PNG_CHUNKS - 4096), MAX_PNG_CHUNKS - 2)] * n,
        ),
        Case.json_images(f"{n} JPEGs with a 64 KiB EXIF (5,400 entries, rotated)", [big_exif_jpeg(256)] * n),
    ]


def refused_cases(limits: Limits) -> list[Case]:
    """What the limits refuse, and what refusing costs."""
    room = limits.body_bytes - 64
    n, full = limits.images, side(limits.image_pixels)
    return [
        Case.json_images(
            f"{n} transparent PNGs of MaxImagePixels (over MaxRequestPixels)", [transparent_png(full)] * n, 413
        ),
        Case.json_images(
            f"{n} progressive JPEGs of {MAX_JPEG_SCANS + 1} scans", [many_scan_jpeg(256, MAX_JPEG_SCANS + 1)] * n, 413
        ),
        Case(
            "body: escaped quotes filling a base64 string",
            "application/json",
            b'{"images": ["' + b'\\"' * (room // 2) + b'"]}',
            1,
            422,
        ),
        Case("body: nesting filling the body", "application/json", b"[" * (room // 2) + b"]" * (room // 2), 0, 400),
        Case("body: one number filling the body", "application/json", b'{"images": [' + b"1" * room + b"]}", 0, 400),
    ]


# --- measuring --------------------------------------------------------------------------------------------


def event(model: str, case: Case) -> dict:
    """The API Gateway event of a case: image bodies base64-encoded (binary media types), JSON as text."""
    ev = json.loads(EVENT_TEMPLATE.read_text())
    binary = case.content_type.startswith("image/")
    ev.update(
        body=base64.b64encode(case.body).decode() if binary else case.body.decode(),
        isBase64Encoded=binary,
        path=f"/models/{model}/predict",
        pathParameters={"model": model},
    )
    ev["headers"]["Content-Type"], ev["multiValueHeaders"]["Content-Type"] = case.content_type, [case.content_type]
    return ev


@dataclass
class Timing:
    status: int
    seconds: list[float]

    def cell(self) -> str:
        return f"{fmt_time(statistics.median(self.seconds) * 1e6)} / {fmt_time(max(self.seconds) * 1e6)}"


def timed(call: Callable[[], int], runs: int) -> Timing:
    statuses, seconds = set(), []
    for _ in range(runs + 1):  # the first call warms up (a model load, a first decode) and is not kept
        started = time.perf_counter()
        statuses.add(call())
        seconds.append(time.perf_counter() - started)
    if len(statuses) != 1:
        raise RuntimeError(f"statuses changed between runs: {statuses}")
    return Timing(statuses.pop(), seconds[1:])


def in_process(handler, case: Case, model: str, runs: int) -> Timing:
    ev, context = event(model, case), LambdaContext("ImagePredictFunction", 2048)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # an EMF line per call
        return timed(lambda: handler.lambda_handler(ev, context)["statusCode"], runs)


def over_http(session, url: str, case: Case, model: str, runs: int) -> Timing:
    headers = {"Content-Type": case.content_type}
    return timed(
        lambda: session.post(f"{url}/models/{model}/predict", data=case.body, headers=headers).status_code, runs
    )


def measure_all(cases: list[Case], call: Callable[[Case, str], Timing], label: str) -> dict:
    results = {}
    for case in cases:
        for model in MODELS:
            progress(f"{label}: {case.name} → {model}")
            results[case.name, model] = timing = call(case, model)
            if timing.status != case.expected:
                progress(f"  answered {timing.status}, not {case.expected}: the table marks it")
    return results


def publish_models(client) -> None:
    from med_classifier.adapters.model_store import ModelStore
    from tests.helpers.keras_models import chest_ct_candidate
    from tests.helpers.skin_lesion import skin_lesion_candidate

    client.create_bucket(Bucket=BUCKET)
    store = ModelStore(BUCKET, client)
    for train in (skin_lesion_candidate, chest_ct_candidate):
        progress(f"smoke-training {train.__name__.removesuffix('_candidate')}…")
        publish(store, train())


# --- report -----------------------------------------------------------------------------------------------


def report(cases: list[Case], limits: Limits, measured: dict[str, dict], runs: int, load: float) -> str:
    paths = list(measured)
    columns = " | ".join(f"{model}, {path}" for path in paths for model in MODELS)
    lines = [
        "## Cost per image request (NOT FOR CLINICAL USE)",
        "",
        f"- Machine: {machine_line(('onnxruntime', 'numpy', 'pillow', 'aws-lambda-powertools'))}",
        f"- Limits: MaxImagePixels {limits.image_pixels:,}, MaxRequestPixels {limits.request_pixels:,}, "
        f"MaxImagesPerRequest {limits.images}, MaxImageBytes {limits.image_bytes:,}, "
        f"MaxImageRequestBytes {limits.body_bytes:,}",
        f"- Each cell: median / max of {runs} warm requests, after one warm-up request; load average {load:.2f} "
        "at the start",
        "",
        f"| request | images | body | status | {columns} |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in paths for _ in MODELS) + " |",
    ]
    for case in cases:
        cells = " | ".join(measured[path][case.name, model].cell() for path in paths for model in MODELS)
        statuses = {results[case.name, model].status for results in measured.values() for model in MODELS}
        status = " / ".join(map(str, sorted(statuses))) + ("" if statuses == {case.expected} else " (!)")
        lines.append(f"| {case.name} | {case.images} | {len(case.body) / 1e6:.2f} MB | {status} | {cells} |")
    for path, results in measured.items():
        (name, model), worst = max(results.items(), key=lambda item: max(item[1].seconds))
        verdict = "within" if max(worst.seconds) <= TARGET_S else "OVER"
        lines += [
            "",
            f"Worst {path}: {fmt_time(max(worst.seconds) * 1e6)} ({name} → {model}), {verdict} the "
            f"{TARGET_S:.0f} s target.",
        ]
    return "\n".join(lines) + "\n"


def run(runs: int, http: bool, markdown: Path | None, request_pixels: int | None = None) -> None:
    limits, load = Limits.defaults(), os.getloadavg()[0]
    limits = replace(limits, request_pixels=request_pixels or limits.request_pixels)
    progress("building the requests…")
    cases = pixel_cases(limits) + byte_cases(limits) + refused_cases(limits)
    measured: dict[str, dict] = {}
    with contextlib.ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-cost-")))
        os.environ["LOCAL_STATE_DIR"] = str(workdir / "state")  # the smoke training's synthetic data
        moto = MotoServer(port=free_port()).start()
        cleanup.callback(moto.stop)
        publish_models(s3_client(moto.url))
        env_file = env_vars_file(
            workdir, moto.url, BUCKET, POINTER_REFRESH_SECONDS="600", MAX_REQUEST_PIXELS=str(limits.request_pixels)
        )
        os.environ.update(function_environment(env_file, "ImagePredictFunction"))
        handler = load_function_module("image_predict")
        measured["in-process"] = measure_all(cases, lambda c, m: in_process(handler, c, m, runs), "in-process")
        if http:
            url, auth = cleanup.enter_context(local_api(env_file, workdir / "runner.log", moto.url))
            session = cleanup.enter_context(requests.Session())
            session.headers.update(auth)
            call = lambda c, m: over_http(session, url, c, m, runs)  # noqa: E731
            measured["HTTP"] = measure_all(cases, call, "HTTP")
    table = report(cases, limits, measured, runs, load)
    print()
    print(table, end="")
    if markdown is not None:
        markdown.write_text(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed requests per case and model (default 5)")
    parser.add_argument("--http", action="store_true", help="also over HTTP through the local runner")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--max-request-pixels", type=int, help="another MaxRequestPixels than the template's")
    args = parser.parse_args(argv)
    run(args.runs, args.http, args.markdown, args.max_request_pixels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
