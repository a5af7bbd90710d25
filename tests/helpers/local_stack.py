"""The local stack that HTTP-level tests start themselves (tests/e2e, tests/browser):
moto in server mode, the template's resources provisioned in it, the four models
published (smoke-trained once per session), the Docker-free SAM runner serving the API
and the event emulation (SQS event source, training jobs, EventBridge)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from med_classifier.adapters.model_store import ModelStore
from scripts.local_cognito import DEMO_USERS, LocalUserPool, id_token, provision_cognito
from scripts.local_resources import provision
from scripts.local_runner.cognito import moto_user_pool
from scripts.local_stack import EventEmulation, MotoServer, aws_client, free_port, s3_client
from tests.helpers.keras_models import breast_cancer_lite_candidate, chest_ct_candidate
from tests.helpers.models import REPO_ROOT, breast_cancer_candidate, publish
from tests.helpers.skin_lesion import skin_lesion_candidate


def write_env_file(
    path,
    moto_url: str,
    bucket: str,
    retrain_thresholds: dict[str, int],
    refresh_seconds: int = 1,
    user_pool: LocalUserPool | None = None,
    lambda_url: str = "",
):
    local = json.loads((REPO_ROOT / "events" / "env.json").read_text())["Parameters"]
    pool = {"USER_POOL_ID": user_pool.pool_id, "USER_POOL_CLIENT_ID": user_pool.client_id} if user_pool else {}
    path.write_text(
        json.dumps(
            {
                "Parameters": {
                    **local,
                    "AWS_ENDPOINT_URL": moto_url,
                    "MODELS_BUCKET": bucket,
                    "POINTER_REFRESH_SECONDS": str(refresh_seconds),
                    "MAX_PREDICT_ROWS": "100",
                    "POWERTOOLS_LOG_LEVEL": "WARNING",
                    "RETRAIN_THRESHOLD": "1000",
                    "RETRAIN_THRESHOLDS": json.dumps(retrain_thresholds),
                    # Jobs fine-tune the smoke-trained production versions on the smoke data set (make run: the
                    # full fine-tuning schedule); still from production's native weights.
                    "RETRAIN_HYPERPARAMETERS": json.dumps({"smoke": "true"}),
                    "TRAINING_OUTPUT_URI": f"s3://{bucket}/training-output/",
                    "LAMBDA_ENDPOINT_URL": lambda_url,  # the PreTraffic hook calls the runner's Lambda API
                    **pool,
                }
            }
        )
    )
    return path


# The reconciler runs every 2 s (not the template's 10 minutes), so the e2e tests also prove it never ends a
# job that is still running; the drift monitor every 10 s (not the template's hour): each run reads every
# model's captures, and the drift tests wait for a report anyway.
SCHEDULE_SECONDS = {"ReconcilerFunction": 2.0, "DriftMonitorFunction": 10.0}


@contextmanager
def running_moto() -> Iterator[MotoServer]:
    server = MotoServer(port=free_port()).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_stack(
    moto_server: MotoServer,
    tmp_path_factory,
    *,
    bucket: str,
    retrain_thresholds: dict[str, int],
    emulate_events: bool = True,
) -> Iterator[dict]:
    """Yields {"url", "lambda_url" (the runner's Lambda Invoke API), "store", "s3", "first", "http", "env",
    "resources", "emulation", "moto_url", "user_pool", "tokens"}: "tokens" maps each demo user
    (scripts/local_cognito.py: clinician, ml-admin, no-group) to an ID token, and the "http" session sends
    the ml-admin's, who may call every route.

    Without `emulate_events` nothing consumes the upload queue and no training job that a request
    creates in moto ever runs (its record stays Pending; "emulation" is None): for tests that only
    exercise the API, such as the fuzzer, whose accepted retrain requests must not start training."""
    from scripts.local_runner import LocalApi

    client = s3_client(moto_server.url)
    cognito = aws_client("cognito-idp", moto_server.url)
    user_pool = provision_cognito(cognito, REPO_ROOT / "template.yaml", moto_server.url)
    tokens = {name: id_token(cognito, user_pool.client_id, user) for name, user in DEMO_USERS.items()}
    port, lambda_port = free_port(), free_port()
    env_file = write_env_file(
        tmp_path_factory.mktemp("env") / "env.json",
        moto_server.url,
        bucket,
        retrain_thresholds,
        user_pool=user_pool,
        lambda_url=f"http://127.0.0.1:{lambda_port}",
    )
    env = json.loads(env_file.read_text())["Parameters"]
    resources = provision(lambda service: aws_client(service, moto_server.url), REPO_ROOT / "template.yaml", env)
    store = ModelStore(bucket, client)
    first = publish(store, breast_cancer_candidate())
    for candidate in (breast_cancer_lite_candidate(), chest_ct_candidate(), skin_lesion_candidate()):
        publish(store, candidate)  # smoke-trained on synthetic data, once per session
    api = LocalApi(
        str(REPO_ROOT / "template.yaml"),
        env_vars_path=str(env_file),
        host="127.0.0.1",
        port=port,
        user_pool=moto_user_pool(moto_server.url, user_pool.pool_id),
        lambda_port=lambda_port,
    )
    api.start()
    # Retraining jobs run as processes of their own; their MLflow runs go to this stack's folder.
    saved_state_dir = os.environ.get("LOCAL_STATE_DIR")
    os.environ["LOCAL_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    emulation = (
        EventEmulation(api, resources.queue_urls, moto_server.url, schedule_seconds=SCHEDULE_SECONDS).start()
        if emulate_events
        else None
    )
    session = requests.Session()
    session.headers["Authorization"] = tokens["ml-admin"]
    try:
        yield {
            "url": f"http://127.0.0.1:{port}",
            "lambda_url": api.lambda_url,
            "store": store,
            "s3": client,
            "first": first,
            "http": session,
            "env": env,
            "resources": resources,
            "emulation": emulation,
            "moto_url": moto_server.url,
            "user_pool": user_pool,
            "tokens": tokens,
        }
    finally:
        session.close()
        if emulation is not None:
            emulation.stop()
        api.stop()
        if saved_state_dir is None:
            os.environ.pop("LOCAL_STATE_DIR", None)
        else:
            os.environ["LOCAL_STATE_DIR"] = saved_state_dir
