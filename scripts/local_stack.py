"""`make run`: the whole product on 127.0.0.1 without Docker.

moto (server mode) stands in for AWS; the models bucket is re-seeded from the
project's local mirror (.local/s3/) so restarts keep what was published; every
model without a production version is trained (synthetic images for the image
models) and published;
then SAM's own API Gateway emulation serves template.yaml through the project's
Docker-free runner. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from med_classifier.api.schemas import EXAMPLE_MALIGNANT_ROW
from scripts.local_cognito import DEMO_USERS, LocalUserPool, provision_cognito, save_user_pool
from training.settings import training_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV_FILE = REPO_ROOT / "events" / "env.json"
# All four models; breast-cancer first (seconds), the image models last (minutes).
MODELS_TO_SEED = ("breast-cancer", "breast-cancer-lite", "chest-ct", "skin-lesion")
# Template parameters `make run` overrides: the drift monitor runs every minute (README, "Drift monitoring"),
# so a replayed stream shows in its report soon after.
LOCAL_PARAMETER_OVERRIDES = {"DriftSchedule": "rate(1 minute)"}
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """moto in server mode as a child process on 127.0.0.1."""

    # moto, plus the job-status route the local training jobs report through (moto_service.py).
    module = "scripts.local_runner.moto_service"

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}; is port {self.port} taken?")
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def aws_client(service: str, endpoint: str):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def s3_client(endpoint: str):
    return aws_client("s3", endpoint)


class BucketMirror:
    """Keeps .local/s3/{bucket}/ an exact copy of a moto bucket (moto keeps state in
    memory only), and restores the bucket from it on start."""

    def __init__(self, client, bucket: str, directory: Path):
        self.client, self.bucket, self.directory = client, bucket, directory
        self._etags: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> int:
        restored = 0
        if self.directory.is_dir():
            for path in sorted(p for p in self.directory.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
                key = path.relative_to(self.directory).as_posix()
                self.client.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
                restored += 1
        self.sync()
        return restored

    def sync(self) -> None:
        seen = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                key, etag = obj["Key"], obj["ETag"]
                seen.add(key)
                target = self.directory / key
                if self._etags.get(key) == etag and target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".tmp")
                partial.write_bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
                partial.replace(target)  # atomic: a crash never leaves a truncated file
                self._etags[key] = etag
        for key in set(self._etags) - seen:
            (self.directory / key).unlink(missing_ok=True)
            del self._etags[key]

    def run_in_background(self, interval: float = 2.0) -> None:
        def loop():
            while not self._stop.wait(interval):
                try:
                    self.sync()
                except Exception as exc:  # moto going away at shutdown must not kill the stack
                    print(f"[mirror] sync failed: {exc}", file=sys.stderr)

        self._thread = threading.Thread(target=loop, name="bucket-mirror", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.sync()


def load_env_file(path: Path) -> dict[str, str]:
    return {k: str(v) for k, v in json.loads(path.read_text()).get("Parameters", {}).items()}


def ensure_models(client, bucket: str, env: dict[str, str], models=MODELS_TO_SEED, quick: bool = False) -> None:
    """Train and publish each model that has no production pointer yet. `quick` trains
    in smoke mode (breast-cancer's full run is already quick and its smoke run's CV is
    too noisy for its gate)."""
    for model_id in models:
        try:
            client.head_object(Bucket=bucket, Key=f"models/{model_id}/production.json")
            print(f"[stack] {model_id}: production version present")
            continue
        except client.exceptions.ClientError:
            pass
        print(f"[stack] {model_id}: no published version, training it now…", flush=True)
        smoke = ["--smoke"] if quick and model_id != "breast-cancer" else []
        subprocess.run(
            [sys.executable, "-m", "training", model_id, "--bucket", bucket, *smoke],
            check=True,
            env={**os.environ, **env},
            cwd=REPO_ROOT,
        )


class EventEmulation:
    """What `sam local` lacks, for the API's functions: Lambda's SQS event sources
    (UploadCounter), the training jobs the functions create in moto, run as local
    processes that report their state changes through the template's EventBridge rules,
    and the template's schedules (ReconcilerFunction, DriftMonitorFunction)."""

    def __init__(
        self,
        api,
        queue_urls: dict[str, str],
        moto_url: str,
        schedule_seconds: dict[str, float] | None = None,
        training_credentials: dict[str, str] | None = None,
    ):
        from scripts.local_runner.event_sources import ScheduleSource, schedules, sqs_event_sources
        from scripts.local_runner.training_jobs import LocalTrainingJobs

        self.sources = sqs_event_sources(api.functions, queue_urls, aws_client("sqs", moto_url))
        self.jobs = LocalTrainingJobs(api.functions, moto_url, credentials=training_credentials)
        # The template's schedules (reconciler, drift monitor) at their rate, or every `schedule_seconds[function
        # id]` seconds (tests).
        periods = schedule_seconds or {}
        self.schedules = [
            ScheduleSource(api.functions, s, periods.get(s.function_id)) for s in schedules(api.functions.stacks)
        ]

    def start(self) -> EventEmulation:
        for source in self.sources:
            source.start()
        self.jobs.start()
        for schedule in self.schedules:
            schedule.start()
        return self

    def stop(self) -> None:
        for schedule in self.schedules:
            schedule.stop()
        self.jobs.stop()
        for source in self.sources:
            source.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Local stack: moto + SAM API emulation on 127.0.0.1. NOT FOR CLINICAL USE."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--env-vars", type=Path, default=DEFAULT_ENV_FILE)
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    parser.add_argument(
        "--quick-train",
        action="store_true",
        help="train missing models in smoke mode (seconds instead of minutes; tests use it)",
    )
    parser.add_argument("--state-dir", type=Path, default=training_settings().local_state_dir)
    parser.add_argument(
        "--workers-per-function",
        type=int,
        default=None,
        metavar="N",
        help="most worker processes per function without ReservedConcurrentExecutions (default: the number of cores)",
    )
    parser.add_argument(
        "--least-privilege",
        action="store_true",
        help="moto with IAM enforced: each function and training job runs with its own role from template.yaml "
        "(scripts/local_iam.py); the runner and these tools stay the local administrator",
    )
    return parser.parse_args(argv)


@dataclass
class Stack:
    """What main started; stop() takes down whatever of it is running, last started first."""

    moto: MotoServer
    mirror: BucketMirror | None = None
    api: object | None = None  # scripts.local_runner.LocalApi
    emulation: EventEmulation | None = None

    def stop(self) -> None:
        if self.emulation:
            self.emulation.stop()
        if self.api:
            self.api.stop()
        if self.mirror:
            try:
                self.mirror.stop()
            except Exception as exc:
                print(f"[stack] final mirror sync failed: {exc}", file=sys.stderr)
        self.moto.stop()


def start_services(stack: Stack, args: argparse.Namespace, env: dict[str, str]) -> LocalUserPool:
    """Provision the template's resources and user pool in moto, restore and mirror the models bucket,
    publish any missing model, then serve the API and emulate its event sources."""
    from scripts.local_resources import provision
    from scripts.local_runner import LocalApi
    from scripts.local_runner.cognito import moto_user_pool

    bucket, moto_url = env["MODELS_BUCKET"], stack.moto.url
    client = s3_client(moto_url)
    resources = provision(lambda service: aws_client(service, moto_url), args.template, env)
    user_pool = provision_cognito(aws_client("cognito-idp", moto_url), args.template, moto_url)
    save_user_pool(user_pool, args.state_dir)
    # The functions read the pool's ids (GET /auth/config): the env-vars file plus them, for this run.
    env_file = args.state_dir / "runner-env.json"
    parameters = {**env, "USER_POOL_ID": user_pool.pool_id, "USER_POOL_CLIENT_ID": user_pool.client_id}
    env_file.write_text(json.dumps({"Parameters": parameters}, indent=2))
    stack.mirror = BucketMirror(client, bucket, args.state_dir / "s3" / bucket)
    restored = stack.mirror.restore()
    print(f"[stack] moto on {moto_url}; restored {restored} objects into s3://{bucket} from {stack.mirror.directory}")
    ensure_models(client, bucket, {**env, **LOCAL_CREDENTIALS}, quick=args.quick_train)
    stack.mirror.sync()
    stack.mirror.run_in_background()
    function_credentials = training_credentials = None
    if args.least_privilege:
        from scripts.local_iam import create_identities, enforce, plan

        identities = create_identities(lambda service: aws_client(service, moto_url), plan(args.template, env))
        enforce(moto_url)
        function_credentials, training_credentials = identities.functions(), identities.credentials["TrainingJobRole"]
        print("[stack] IAM enforced: each function and training job runs with its own role (scripts/local_iam.py)")
    stack.api = LocalApi(
        str(args.template),
        env_vars_path=str(env_file),
        host=args.host,
        port=args.port,
        parameter_overrides=LOCAL_PARAMETER_OVERRIDES,
        user_pool=moto_user_pool(moto_url, user_pool.pool_id),
        workers_per_function=args.workers_per_function,
        function_credentials=function_credentials,
    )
    stack.api.start()
    stack.emulation = EventEmulation(
        stack.api, resources.queue_urls, moto_url, training_credentials=training_credentials
    ).start()
    return user_pool


def ready_banner(args: argparse.Namespace, env: dict[str, str], stack: Stack, user_pool: LocalUserPool) -> str:
    base = f"http://{args.host}:{args.port}"
    users = "\n".join(
        f"                {user.username:<24} {user.password:<20} {', '.join(user.groups) or '(no group)'}"
        for user in DEMO_USERS.values()
    )
    row = json.dumps({"instances": [EXAMPLE_MALIGNANT_ROW]})
    threshold = env.get("RETRAIN_THRESHOLD", "?")
    return f"""
  Local stack ready — NOT FOR CLINICAL USE
    web page    {base}/   (sign in, predict, upload labelled images, watch retraining)
    users       local demo users in user pool {user_pool.pool_id} (moto; README, "Who may call what"):
{users}
    sign in     TOKEN=$(.venv/bin/python -m scripts.local_cognito token clinician)   (or ml-admin, no-group)
    API         {base}/health   (open: the page, health, /openapi.json, /docs, /auth/config)
    models      curl -s {base}/models -H "Authorization: $TOKEN"
    predict     curl -s -X POST {base}/models/breast-cancer/predict -H "Authorization: $TOKEN" \\
                  -H 'Content-Type: application/json' -d '{row}'
    image       curl -s -X POST {base}/models/skin-lesion/predict -H "Authorization: $TOKEN" \\
                  -H 'Content-Type: image/png' --data-binary @events/images/skin-lesion-mel.png
                (also: events/images/chest-ct-*.png → /models/chest-ct/predict)
    retraining  .venv/bin/python -m scripts.upload_labelled --model chest-ct --label normal \\
                  --copies {threshold} events/images/chest-ct-normal.png   (signs in as the clinician)
                (threshold {threshold} uploads per model; then watch: curl -s {base}/models/chest-ct ...)
                by hand (ml-admins): curl -s -X POST {base}/models/chest-ct/retrain -H "Authorization: $TOKEN"
    API docs    {base}/docs      (OpenAPI: {base}/openapi.json)
    moto        {stack.moto.url}  (bucket {env["MODELS_BUCKET"]}, mirrored to {stack.mirror.directory})
    MLflow UI   .venv/bin/mlflow ui --backend-store-uri sqlite:///{args.state_dir}/mlflow/mlflow.db
  Ctrl-C to stop.
"""


def stop_signal() -> threading.Event:
    """Set by SIGTERM; Ctrl-C (SIGINT) raises KeyboardInterrupt, even when started from a
    background job, which inherits SIGINT ignored."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return stopping


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = load_env_file(args.env_vars)
    endpoint = urlparse(env["AWS_ENDPOINT_URL"])
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ["LOCAL_STATE_DIR"] = str(args.state_dir)
    if args.least_privilege:  # moto with the resource checks IAM makes (enforced once provisioned)
        from scripts.local_iam import moto_server

        server = moto_server(port=endpoint.port, host=endpoint.hostname)
    else:
        server = MotoServer(port=endpoint.port, host=endpoint.hostname)
    stack = Stack(server.start())
    stopping = stop_signal()
    try:
        user_pool = start_services(stack, args, env)
        print(ready_banner(args, env, stack, user_pool), flush=True)
        while not stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("\n[stack] stopping…", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
