"""The template's Cognito user pool, app client and groups, created in moto as `sam deploy` would
create them on AWS, and one demo user per group (local only: their passwords are printed by
`make run` and written here, never used on AWS). `create_user` and `id_token` also serve a deployed
pool (scripts/deploy.py's smoke-test user, scripts/smoke_test.py's sign-in).

Read from template.yaml itself (scripts/local_resources.py does the same for buckets, queues and
tables): the pool's username attributes and password policy, the client's auth flows, each
group's name, description and precedence. Idempotent: a pool of the same name is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

POOL_NAME = "med-classifier-local-users"
CLIENT_NAME = "med-classifier-local-web"


@dataclass(frozen=True)
class PoolUser:
    username: str  # an email address: the pool signs in by email (UsernameAttributes)
    password: str
    groups: tuple[str, ...]


# Local only (moto): one user per group, and one signed-in user in no group.
DEMO_USERS = {
    "clinician": PoolUser("clinician@example.org", "Clinician-demo-2026", ("clinicians",)),
    "ml-admin": PoolUser("ml-admin@example.org", "MlAdmin-demo-2026", ("ml-admins",)),
    "no-group": PoolUser("visitor@example.org", "Visitor-demo-2026", ()),
}


@dataclass(frozen=True)
class LocalUserPool:
    pool_id: str
    client_id: str
    endpoint_url: str


def _resources_of(template: dict, resource_type: str) -> dict[str, dict]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == resource_type}


def provision_cognito(cognito, template_path: Path, endpoint_url: str) -> LocalUserPool:
    """`cognito` is a boto3 cognito-idp client for moto."""
    from scripts.local_resources import load_template  # SAM CLI's parser: only when provisioning

    template = load_template(template_path)
    [(_, pool)] = _resources_of(template, "AWS::Cognito::UserPool").items()
    [(_, client)] = _resources_of(template, "AWS::Cognito::UserPoolClient").items()
    props, client_props = pool["Properties"], client["Properties"]
    existing = [p["Id"] for p in cognito.list_user_pools(MaxResults=60)["UserPools"] if p["Name"] == POOL_NAME]
    if existing:
        pool_id = existing[0]
    else:
        pool_id = cognito.create_user_pool(
            PoolName=POOL_NAME,
            UsernameAttributes=props.get("UsernameAttributes", []),
            AutoVerifiedAttributes=props.get("AutoVerifiedAttributes", []),
            AdminCreateUserConfig=props.get("AdminCreateUserConfig", {}),
            Policies=props.get("Policies", {}),
        )["UserPool"]["Id"]
    clients = cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    named = [c["ClientId"] for c in clients if c["ClientName"] == CLIENT_NAME]
    client_id = (
        named[0]
        if named
        else cognito.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=CLIENT_NAME,
            GenerateSecret=bool(client_props.get("GenerateSecret", False)),
            ExplicitAuthFlows=client_props.get("ExplicitAuthFlows", []),
        )["UserPoolClient"]["ClientId"]
    )
    groups = {g["GroupName"] for g in cognito.list_groups(UserPoolId=pool_id)["Groups"]}
    for group in _resources_of(template, "AWS::Cognito::UserPoolGroup").values():
        group_props = group["Properties"]
        if group_props["GroupName"] not in groups:
            cognito.create_group(
                UserPoolId=pool_id,
                GroupName=group_props["GroupName"],
                Description=group_props.get("Description", ""),
                Precedence=int(group_props.get("Precedence", 0)),
            )
    for user in DEMO_USERS.values():
        create_user(cognito, pool_id, user)
    return LocalUserPool(pool_id, client_id, endpoint_url)


def create_user(cognito, pool_id: str, user: PoolUser) -> None:
    """A confirmed user with a permanent password in `user.groups` (as an administrator would, then the user's
    first sign-in, set it up on AWS: README, "Who may call what")."""
    try:
        cognito.admin_create_user(
            UserPoolId=pool_id,
            Username=user.username,
            UserAttributes=[{"Name": "email", "Value": user.username}, {"Name": "email_verified", "Value": "true"}],
            MessageAction="SUPPRESS",
        )
    except cognito.exceptions.UsernameExistsException:
        pass
    cognito.admin_set_user_password(UserPoolId=pool_id, Username=user.username, Password=user.password, Permanent=True)
    for group in user.groups:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=user.username, GroupName=group)


class SignInChallenge(Exception):
    """Cognito answered a challenge (a new password, an MFA code) where tokens were expected."""


def id_token(cognito, client_id: str, user: PoolUser) -> str:
    """An ID token for `user`, signed in as the page signs in (InitiateAuth, USER_PASSWORD_AUTH)."""
    answer = cognito.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": user.username, "PASSWORD": user.password},
    )
    if "AuthenticationResult" not in answer:
        raise SignInChallenge(f"Cognito asks for {answer.get('ChallengeName')} before it gives {user.username} tokens")
    return answer["AuthenticationResult"]["IdToken"]


STATE_FILE = "cognito.json"


def save_user_pool(pool: LocalUserPool, state_dir: Path) -> Path:
    """Where `make run`'s pool is, for `python -m scripts.local_cognito token` (and the upload script)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    path.write_text(json.dumps(asdict(pool), indent=2))
    return path


def load_user_pool(state_dir: Path) -> LocalUserPool:
    path = state_dir / STATE_FILE
    if not path.exists():
        raise SystemExit(f"{path} does not exist: start the local stack first (make run).")
    return LocalUserPool(**json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    from training.settings import training_settings

    parser = argparse.ArgumentParser(
        description="ID tokens of the local stack's demo users (moto). NOT FOR CLINICAL USE."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="print a demo user's ID token (for the Authorization header)")
    token.add_argument("user", choices=sorted(DEMO_USERS))
    token.add_argument("--state-dir", type=Path, default=training_settings().local_state_dir)
    args = parser.parse_args(argv)
    print(demo_token(args.user, args.state_dir))
    return 0


def demo_token(user: str, state_dir: Path) -> str:
    """An ID token of a demo user of the running local stack (`make run` saved its pool in `state_dir`)."""
    from scripts.local_stack import aws_client

    pool = load_user_pool(state_dir)
    return id_token(aws_client("cognito-idp", pool.endpoint_url), pool.client_id, DEMO_USERS[user])


if __name__ == "__main__":
    sys.exit(main())
