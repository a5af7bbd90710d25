"""Who is calling (med_classifier.api.caller): the claims API Gateway's Cognito authorizer passes,
and the group checks the functions make again, with their exact messages."""

from __future__ import annotations

import pytest

from med_classifier.api.caller import RETRAINERS, UPLOADERS, Caller, caller_of, claim_list, require_group
from med_classifier.domain.errors import Forbidden, NotSignedIn


def event(claims: dict | None) -> dict:
    return {"requestContext": {"authorizer": {"claims": claims}} if claims is not None else {}}


@pytest.mark.parametrize(
    "value, groups",
    [("a,b", ["a", "b"]), ("[a b]", ["a", "b"]), ("a", ["a"]), ("", []), (None, []), (["a", "b"], ["a", "b"])],
)
def test_a_list_claim_is_read_in_each_shape_api_gateway_writes(value, groups):
    assert claim_list(value) == groups


def test_the_caller_is_the_verified_sub_with_its_email_and_groups():
    caller = caller_of(event({"sub": "s-1", "email": "c@example.org", "cognito:groups": "clinicians,ml-admins"}))
    assert caller == Caller(sub="s-1", username="c@example.org", groups=frozenset({"clinicians", "ml-admins"}))


@pytest.mark.parametrize("claims", [None, {}, {"sub": ""}, {"email": "c@example.org"}])
def test_without_a_verified_sub_there_is_no_caller(claims):
    assert caller_of(event(claims)) is None


def test_an_anonymous_request_is_401_with_how_to_sign_in():
    with pytest.raises(NotSignedIn) as refused:
        require_group(None, UPLOADERS, "upload training data")
    assert refused.value.status_code == 401
    assert refused.value.message == (
        "Sign in to upload training data: send a Cognito ID token in the Authorization header."
    )


def test_a_caller_outside_the_groups_is_403_naming_them():
    clinician = Caller("s-1", "c@example.org", frozenset({"clinicians"}))
    with pytest.raises(Forbidden) as refused:
        require_group(clinician, RETRAINERS, "start retraining")
    assert refused.value.status_code == 403
    assert refused.value.message == "c@example.org may not start retraining: that needs membership of ml-admins."
    assert refused.value.details == [{"groups": ["clinicians"], "allowed": ["ml-admins"]}]


def test_a_caller_in_one_of_the_groups_is_let_through():
    admin = Caller("s-2", "a@example.org", frozenset({"ml-admins"}))
    assert require_group(admin, UPLOADERS, "upload training data") is admin
    assert require_group(admin, RETRAINERS, "start retraining") is admin
    with pytest.raises(Forbidden):
        require_group(Caller("s-3", "v@example.org", frozenset()), UPLOADERS, "upload training data")
