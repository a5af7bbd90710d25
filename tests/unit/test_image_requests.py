"""Request bodies -> image files: raw bodies, base64 JSON, limits, media types."""

import base64
import json

import pytest

from med_classifier.api.image_requests import ImageLimits, images_from_body
from med_classifier.domain.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100  # contents are checked later, by preprocessing


def as_json(*items) -> bytes:
    return json.dumps({"images": list(items)}).encode()


def test_raw_image_body_and_content_type_parameters():
    assert images_from_body("skin-lesion", "image/png", PNG).images == [PNG]
    assert images_from_body("skin-lesion", "Image/JPEG; charset=binary", b"\xff\xd8data").images == [b"\xff\xd8data"]


def test_json_with_base64_images_and_data_urls():
    encoded = base64.b64encode(PNG).decode()
    body = as_json(encoded, "data:image/png;base64," + encoded)
    assert images_from_body("skin-lesion", "application/json", body).images == [PNG, PNG]


@pytest.mark.parametrize(
    "content_type, body, error, text",
    [
        ("text/plain", b"hello", UnsupportedMediaType, "text/plain"),
        ("image/gif", b"GIF89a", UnsupportedMediaType, "image/gif"),
        ("image/png", b"", InvalidInput, "empty"),
        ("application/json", b"{not json", InvalidInput, "neither an image nor JSON"),
        ("application/json", b'{"instances": [[1, 2]]}', InvalidInput, '"images"'),
        ("application/json", b'{"images": []}', InvalidInput, "at least one"),
        ("application/json", b'{"images": ["%%%"]}', InvalidInput, "images[0] is not valid base64"),
        ("application/json", b'{"images": [42]}', InvalidInput, "images[0] must be a base64 string"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(content_type, body, error, text):
    with pytest.raises(error, match=text.replace("[", r"\[").replace("]", r"\]")):
        images_from_body("skin-lesion", content_type, body)


def test_oversized_image_points_to_the_upload_path():
    limits = ImageLimits(max_bytes=64)
    with pytest.raises(PayloadTooLarge) as raw:
        images_from_body("skin-lesion", "image/png", PNG, limits)
    assert "/models/skin-lesion/uploads" in raw.value.message
    assert raw.value.details == [{"max_image_bytes": 64, "upload_path": "/models/skin-lesion/uploads"}]
    with pytest.raises(PayloadTooLarge):
        images_from_body("skin-lesion", "application/json", as_json(base64.b64encode(PNG).decode()), limits)


def test_too_many_images():
    limits = ImageLimits(max_images=2)
    encoded = base64.b64encode(PNG).decode()
    assert len(images_from_body("chest-ct", "application/json", as_json(encoded, encoded), limits).images) == 2
    with pytest.raises(PayloadTooLarge, match="at most 2"):
        images_from_body("chest-ct", "application/json", as_json(encoded, encoded, encoded), limits)


def test_media_types_are_named_exactly_and_a_missing_one_is_refused():
    hint = 'image/jpeg or image/png, or application/json with {"images": ["<base64>", ...]}'
    with pytest.raises(UnsupportedMediaType) as missing:
        images_from_body("skin-lesion", None, as_json(base64.b64encode(PNG).decode()))
    assert missing.value.message == f"The request has no Content-Type: send {hint}."
    with pytest.raises(UnsupportedMediaType) as other:
        images_from_body("skin-lesion", "image/gif", b"GIF89a")
    assert other.value.message == f"Content-Type 'image/gif' is not accepted here: send {hint}."


def test_json_nested_too_deep_for_the_parser_is_invalid_input_not_a_recursion_error():
    with pytest.raises(InvalidInput) as refused:
        images_from_body("skin-lesion", "application/json", b"[" * 100_000 + b"]" * 100_000)
    assert refused.value.message == (
        'The body is neither an image nor JSON. Send image/jpeg or image/png, or {"images": ["<base64>", ...]} '
        "as application/json."
    )


def test_a_base64_image_one_byte_over_the_limit_is_too_large():
    # 257 bytes encode to 344 characters, within the loose check on the text (256 * 4 // 3 + 4).
    with pytest.raises(PayloadTooLarge) as refused:
        images_from_body(
            "chest-ct", "application/json", as_json(base64.b64encode(b"\x89" * 257).decode()), ImageLimits(256)
        )
    assert refused.value.message == (
        "images[0] is larger than 256 bytes. Send a smaller (downscaled) image, or upload it to S3 with "
        "POST /models/chest-ct/uploads."
    )
    assert images_from_body(
        "chest-ct", "application/json", as_json(base64.b64encode(b"\x89" * 256).decode()), ImageLimits(256)
    ).images
