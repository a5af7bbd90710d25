"""Who is calling: the claims API Gateway's Cognito authorizer verified, and the group checks
the functions make again (defence in depth: the authorizer proves who the caller is, not what
they may do; README, "Who may call what").

API Gateway (REST, Lambda proxy) passes the ID token's claims in
`requestContext.authorizer.claims`, every value a string: a list such as `cognito:groups`
arrives as "a,b" (and, through other integrations, as "[a b]"); both are read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..domain.errors import Forbidden, NotSignedIn

CLINICIANS = "clinicians"
ML_ADMINS = "ml-admins"
# Who may do what, by action (README "Who may call what" prints the same table).
UPLOADERS = (CLINICIANS, ML_ADMINS)
RETRAINERS = (ML_ADMINS,)


@dataclass(frozen=True)
class Caller:
    sub: str  # the user's immutable id in the pool: recorded with each upload and job
    username: str
    groups: frozenset[str]


def claim_list(value: object) -> list[str]:
    """A list claim as API Gateway hands it over: "a,b", "[a b]", one name, or a JSON list."""
    if isinstance(value, list | tuple):
        return [str(item) for item in value if str(item)]
    text = str(value or "").strip()
    if text.startswith("[") and text.endswith("]"):
        return text[1:-1].split()
    return [part.strip() for part in text.split(",") if part.strip()]


def caller_of(event: Mapping) -> Caller | None:
    """The verified caller of an API Gateway event, or None when the route had no authorizer."""
    claims = ((event.get("requestContext") or {}).get("authorizer") or {}).get("claims") or {}
    sub = str(claims.get("sub") or "")
    if not sub:
        return None
    username = str(claims.get("email") or claims.get("cognito:username") or sub)
    return Caller(sub=sub, username=username, groups=frozenset(claim_list(claims.get("cognito:groups"))))


def require_group(caller: Caller | None, allowed: tuple[str, ...], action: str) -> Caller:
    """The caller, if signed in and in one of `allowed`; else NotSignedIn (401) or Forbidden (403)."""
    if caller is None:
        raise NotSignedIn(f"Sign in to {action}: send a Cognito ID token in the Authorization header.")
    if not caller.groups & set(allowed):
        raise Forbidden(
            f"{caller.username} may not {action}: that needs membership of {' or '.join(allowed)}.",
            details=[{"groups": sorted(caller.groups), "allowed": list(allowed)}],
        )
    return caller
