"""Presigned POSTs for labelled uploads: the policy S3 will enforce (moto does not)."""

import base64
import json

import boto3
import pytest

from med_classifier.adapters.s3_uploads import S3UploadSigner
from med_classifier.domain.errors import InvalidInput, NotSignedIn, UnknownModel, UnsupportedMediaType
from med_classifier.domain.uploads import UploadLimits, presigned_upload
from tests.helpers.image_models import colour_candidate
from tests.helpers.models import breast_cancer_candidate, manifest_for

BUCKET = "uploads-test"


@pytest.fixture(scope="module")
def client():
    # Signing is local: no request is sent.
    return S3UploadSigner(
        BUCKET,
        client=boto3.client(
            "s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        ),
    )


@pytest.fixture(scope="module")
def image_manifest():
    return manifest_for(colour_candidate("colour-test"))


def test_policy_pins_key_content_type_size_and_expiry(client, image_manifest):
    ticket = presigned_upload(
        client,
        image_manifest,
        "colour-test",
        "green",
        "image/png",
        UploadLimits(max_bytes=5000000),
        new_id=lambda: "abc123",
        uploader="sub-of-a-clinician",
    )
    assert ticket.key == "uploads/colour-test/green/abc123.png" and ticket.fields["key"] == ticket.key
    assert ticket.fields["Content-Type"] == "image/png" and ticket.max_bytes == 5000000
    policy = json.loads(base64.b64decode(ticket.fields["policy"]))
    conditions = policy["conditions"]
    assert {"bucket": BUCKET} in conditions
    assert ["eq", "$key", ticket.key] in conditions
    assert ["eq", "$Content-Type", "image/png"] in conditions
    assert ["content-length-range", 1, 5000000] in conditions
    assert ticket.fields["x-amz-meta-uploader"] == "sub-of-a-clinician"
    assert ["eq", "$x-amz-meta-uploader", "sub-of-a-clinician"] in conditions
    assert policy["expiration"].endswith("Z") and ticket.expires_in == 900


def test_jpeg_gets_a_jpg_key_and_every_upload_a_fresh_key(client, image_manifest):
    first = presigned_upload(
        client, image_manifest, "colour-test", "red", "image/jpeg", UploadLimits(), uploader="sub-1"
    )
    second = presigned_upload(
        client, image_manifest, "colour-test", "red", "image/jpeg", UploadLimits(), uploader="sub-1"
    )
    assert first.key.endswith(".jpg") and first.key != second.key


@pytest.mark.parametrize(
    "label, content_type, error",
    [
        ("purple", "image/png", InvalidInput),
        ("../red", "image/png", InvalidInput),
        ("red", "image/gif", UnsupportedMediaType),
        ("red", "", UnsupportedMediaType),
    ],
)
def test_bad_label_or_type_is_refused(client, image_manifest, label, content_type, error):
    with pytest.raises(error):
        presigned_upload(client, image_manifest, "colour-test", label, content_type, UploadLimits(), uploader="sub-1")


def test_an_upload_without_an_uploader_is_refused(client, image_manifest):
    with pytest.raises(NotSignedIn) as refused:
        presigned_upload(client, image_manifest, "colour-test", "red", "image/png", UploadLimits(), uploader="")
    assert refused.value.message == ("Only a signed-in user may upload training data: the upload records who sent it.")


def test_unknown_and_tabular_models_are_refused(client):
    with pytest.raises(UnknownModel):
        presigned_upload(client, None, "nope", "red", "image/png", UploadLimits(), uploader="sub-1")
    with pytest.raises(InvalidInput, match="feature rows"):
        presigned_upload(
            client,
            manifest_for(breast_cancer_candidate()),
            "breast-cancer",
            "malignant",
            "image/png",
            UploadLimits(),
            uploader="sub-1",
        )


def test_refusals_name_what_was_wrong_and_list_the_labels(client, image_manifest):
    with pytest.raises(UnknownModel) as unknown:
        presigned_upload(client, None, "nope", "red", "image/png", UploadLimits(), uploader="sub-1")
    assert unknown.value.message == "No model named 'nope'. GET /models lists the models."
    with pytest.raises(InvalidInput) as label:
        presigned_upload(client, image_manifest, "colour-test", "purple", "image/png", UploadLimits(), uploader="sub-1")
    assert label.value.message == (
        f"Unknown label 'purple' for 'colour-test'; expected one of {image_manifest.classes}."
    )
    assert label.value.details == [{"labels": image_manifest.classes}]
    with pytest.raises(UnsupportedMediaType) as media:
        presigned_upload(client, image_manifest, "colour-test", "red", "image/gif", UploadLimits(), uploader="sub-1")
    assert media.value.message == "content_type 'image/gif' is not accepted: use image/jpeg or image/png."


@pytest.mark.parametrize(
    "content_type", ["image/png; charset=binary", "IMAGE/PNG", " image/png ;q=1", "image/png; a=1; b=2"]
)
def test_media_type_parameters_and_case_are_ignored(client, image_manifest, content_type):
    ticket = presigned_upload(
        client, image_manifest, "colour-test", "red", content_type, UploadLimits(), uploader="sub-1"
    )
    assert ticket.content_type == "image/png" and ticket.key.endswith(".png")
    assert ticket.fields["Content-Type"] == "image/png"
