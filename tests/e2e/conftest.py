"""The local stack, started by the tests themselves: moto server + the Docker-free SAM runner."""

import json
import os

import pytest
import requests

from med_classifier.model_store import ModelStore
from scripts.local_resources import provision
from scripts.local_stack import EventEmulation, MotoServer, aws_client, free_port, s3_client
from tests.helpers.keras_models import breast_cancer_lite_candidate, chest_ct_candidate
from tests.helpers.models import REPO_ROOT, breast_cancer_candidate, publish
from tests.helpers.skin_lesion import skin_lesion_candidate

BUCKET = "med-classifier-models-e2e"
API_KEY = "e2e-key"
# chest-ct retrains after 4 uploads; the other models never do in these tests.
RETRAIN_THRESHOLDS = {"chest-ct": 4}


def write_env_file(path, moto_url: str, refresh_seconds: int = 1):
    local = json.loads((REPO_ROOT / "events" / "env.json").read_text())["Parameters"]
    path.write_text(json.dumps({"Parameters": {
        **local, "AWS_ENDPOINT_URL": moto_url, "MODELS_BUCKET": BUCKET, "POINTER_REFRESH_SECONDS": str(refresh_seconds),
        "MAX_PREDICT_ROWS": "100", "POWERTOOLS_LOG_LEVEL": "WARNING", "RETRAIN_THRESHOLD": "1000",
        "RETRAIN_THRESHOLDS": json.dumps(RETRAIN_THRESHOLDS),
        "TRAINING_OUTPUT_URI": f"s3://{BUCKET}/training-output/"}}))
    return path


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer(port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(moto_server, tmp_path_factory):
    from scripts.local_runner import LocalApi

    client = s3_client(moto_server.url)
    env_file = write_env_file(tmp_path_factory.mktemp("env") / "env.json", moto_server.url)
    env = json.loads(env_file.read_text())["Parameters"]
    resources = provision(lambda service: aws_client(service, moto_server.url), REPO_ROOT / "template.yaml", env)
    store = ModelStore(BUCKET, client)
    first = publish(store, breast_cancer_candidate())
    for candidate in (breast_cancer_lite_candidate(), chest_ct_candidate(), skin_lesion_candidate()):
        publish(store, candidate)  # smoke-trained on synthetic data, once per session
    port = free_port()
    api = LocalApi(str(REPO_ROOT / "template.yaml"), env_vars_path=str(env_file), host="127.0.0.1", port=port,
                   api_key=API_KEY)
    api.start()
    # Retraining jobs run as processes of their own; their MLflow runs go to this session's folder.
    saved_state_dir = os.environ.get("LOCAL_STATE_DIR")
    os.environ["LOCAL_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    emulation = EventEmulation(api, resources.queue_urls, moto_server.url).start()
    session = requests.Session()
    yield {"url": f"http://127.0.0.1:{port}", "store": store, "s3": client, "first": first, "http": session,
           "env": env, "resources": resources, "emulation": emulation, "moto_url": moto_server.url}
    session.close()
    emulation.stop()
    api.stop()
    if saved_state_dir is None:
        os.environ.pop("LOCAL_STATE_DIR", None)
    else:
        os.environ["LOCAL_STATE_DIR"] = saved_state_dir
