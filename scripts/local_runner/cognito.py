"""API Gateway's Cognito user pool authorizer, which ``sam local`` does not emulate.

A route whose authorizer is the template's Cognito one (the API's ``DefaultAuthorizer`` unless the event says
``Auth: {Authorizer: NONE}``) answers 401 ``{"message": "Unauthorized"}``, as API Gateway does, unless the
``Authorization`` header holds an ID token of the user pool: RS256 signature by a key of the pool's JWKS (moto
serves it), issuer the pool's, ``token_use`` "id", audience one of the pool's app clients, not expired. (API
Gateway takes access tokens only on methods with OAuth scopes; this API has none.) The verified claims reach the
function as API Gateway passes them: ``requestContext.authorizer.claims``, every value a string, a list such as
``cognito:groups`` joined with commas, times as API Gateway writes them.

Which group may call a route is the functions' check (med_classifier.api.caller), on AWS as here: the authorizer
proves who the caller is. tests/e2e/test_auth_over_http.py sends every route each kind of bad token.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

LOG = logging.getLogger(__name__)
CLAIMS_KEY = "local_runner.claims"  # the verified claims in the WSGI environ, for the event's requestContext
UNAUTHORIZED = b'{"message":"Unauthorized"}'
NONE = "NONE"
VERIFIED_TOKENS_KEPT = 1024


def route_authorizer(api_auth: dict | None, event_properties: dict) -> str | None:
    """The authorizer guarding an Api event: its own ``Auth.Authorizer``, else the API's ``DefaultAuthorizer``;
    None for ``Authorizer: NONE`` or when there is neither."""
    named = (event_properties.get("Auth") or {}).get("Authorizer")
    authorizer = named if named is not None else (api_auth or {}).get("DefaultAuthorizer")
    return None if authorizer in (None, NONE) else authorizer


def cognito_authorizers(api_auth: dict | None) -> set[str]:
    """The names of an API's Cognito user pool authorizers (``UserPoolArn``); Lambda authorizers are SAM CLI's."""
    return {name for name, spec in ((api_auth or {}).get("Authorizers") or {}).items() if "UserPoolArn" in spec}


def cognito_routes(resources: dict) -> list[tuple[str, re.Pattern]]:
    """(method, path regex) of every Api event a Cognito authorizer guards, from a template's resources."""
    routes = []
    for resource in resources.values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            properties = event.get("Properties", {})
            if event.get("Type") != "Api":
                continue
            auth = api_auth(resources, properties)
            if route_authorizer(auth, properties) in cognito_authorizers(auth):
                pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(properties["Path"]))
                routes.append((properties["Method"].upper(), re.compile(f"^{pattern}$")))
    return routes


def api_auth(resources: dict, event_properties: dict) -> dict | None:
    """The Auth of the AWS::Serverless::Api an Api event names: ``RestApiId: !Ref Api`` in the template, the
    logical id itself once SAM CLI's stack provider has resolved it."""
    rest_api_id = event_properties.get("RestApiId")
    logical_id = rest_api_id.get("Ref") if isinstance(rest_api_id, dict) else rest_api_id
    if not isinstance(logical_id, str):
        return None
    return (resources.get(logical_id, {}).get("Properties") or {}).get("Auth")


class TokenRefused(Exception):
    """Why a token is not accepted (logged; the client gets API Gateway's plain 401)."""


@dataclass
class UserPool:
    """One user pool as its tokens are checked: issuer, app client ids and where its JWKS is served."""

    pool_id: str
    client_ids: frozenset[str]
    jwks_url: str
    region: str = "us-east-1"
    _keys: KeySet | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # token -> its claims, once its signature and claims have been checked: a client sends the same token
    # with every request, and an RS256 check costs ~0.1 ms. Expiry is checked at every use.
    _verified: dict[str, dict] = field(default_factory=dict, repr=False)

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.pool_id}"

    def keys(self) -> KeySet:
        with self._lock:
            if self._keys is None:
                with urllib.request.urlopen(self.jwks_url, timeout=10) as response:  # noqa: S310 - moto on loopback
                    self._keys = KeySet.import_key_set(json.load(response))
            return self._keys

    def verify(self, token: str, now: float | None = None) -> dict:
        """The token's claims; TokenRefused for any token API Gateway's Cognito authorizer would refuse."""
        if not token:
            raise TokenRefused("no Authorization header")
        now = int(now if now is not None else time.time())
        known = self._verified.get(token)
        if known is not None:
            if known["exp"] <= now:  # as JWTClaimsRegistry's check: expired at exp
                raise TokenRefused(f"ExpiredTokenError: the token expired at {known['exp']}")
            return known
        try:
            decoded = jwt.decode(token, self.keys(), algorithms=["RS256"])
        except (JoseError, ValueError) as error:
            raise TokenRefused(f"not a token of this pool: {type(error).__name__}: {error}") from error
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            now=now,
            iss={"essential": True, "value": self.issuer},
            token_use={"essential": True, "value": "id"},
            aud={"essential": True, "values": sorted(self.client_ids)},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise TokenRefused(f"{type(error).__name__}: {error}") from error
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.clear()
        self._verified[token] = claims
        return claims


def api_gateway_claims(claims: dict) -> dict[str, str]:
    """Claims as API Gateway's Cognito authorizer hands them to a REST API's Lambda proxy: every value a string,
    lists joined with commas, ``exp``/``iat``/``auth_time`` as dates."""
    shown = {}
    for name, value in claims.items():
        if isinstance(value, list | tuple):
            shown[name] = ",".join(str(item) for item in value)
        elif name in ("exp", "iat", "auth_time") and isinstance(value, int | float):
            shown[name] = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(value))
        elif isinstance(value, bool):
            shown[name] = "true" if value else "false"
        else:
            shown[name] = str(value)
    return shown


class CognitoAuthorizerCheck:
    """WSGI middleware: the Cognito authorizer of the routes ``routes`` lists, against ``pool``. Without a pool
    (no Cognito configured locally) those routes answer 401, as API Gateway would without a valid token."""

    def __init__(self, app, routes: list[tuple[str, re.Pattern]], pool: UserPool | None) -> None:
        self.app, self.routes, self.pool = app, routes, pool

    def __call__(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        environ.pop(CLAIMS_KEY, None)
        if any(method == m and pattern.match(path) for m, pattern in self.routes):
            try:
                if self.pool is None:
                    raise TokenRefused("no user pool is configured for the local runner")
                claims = self.pool.verify(environ.get("HTTP_AUTHORIZATION", ""))
            except TokenRefused as refused:
                LOG.info("401 %s %s: %s", method, path, refused)
                start_response(
                    "401 UNAUTHORIZED",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(UNAUTHORIZED)))],
                )
                return [UNAUTHORIZED]
            environ[CLAIMS_KEY] = api_gateway_claims(claims)
        return self.app(environ, start_response)


def moto_user_pool(endpoint_url: str, pool_id: str) -> UserPool:
    """A user pool in moto: its app clients listed, its JWKS where moto serves it."""
    import boto3

    region = pool_id.split("_", 1)[0]
    client = boto3.client("cognito-idp", endpoint_url=endpoint_url, region_name=region)
    clients = client.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    return UserPool(
        pool_id=pool_id,
        client_ids=frozenset(c["ClientId"] for c in clients),
        jwks_url=f"{endpoint_url.rstrip('/')}/{pool_id}/.well-known/jwks.json",
        region=region,
    )
