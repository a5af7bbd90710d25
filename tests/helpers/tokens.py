"""Reading the ID tokens the tests sign in with (claims only: the runner checks signatures)."""

from __future__ import annotations

import base64
import json


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def subject(token: str) -> str:
    """The user's `sub`: what uploads and jobs record."""
    return claims(token)["sub"]


def moto_signing_key():
    """The private key moto signs its user pools' tokens with (the public half is what it serves as JWKS)."""
    from joserfc.jwk import RSAKey
    from moto.utilities.utils import load_resource

    return RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))


def forged(claims_: dict, key=None, kid: str = "dummy") -> str:
    """A token with these claims, signed by `key` (moto's by default: a token of the pool, as far as the
    signature goes) under key id `kid`."""
    from joserfc import jwt

    return jwt.encode({"alg": "RS256", "kid": kid}, claims_, key or moto_signing_key())


def stranger_key():
    """An RSA key no pool has: what signs a token with a wrong signature."""
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)
