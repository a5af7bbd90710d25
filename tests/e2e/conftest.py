"""The local stack, started by the tests themselves: moto server + the Docker-free SAM runner."""

import json

import pytest
import requests

from med_classifier.model_store import ModelStore
from scripts.local_stack import MotoServer, free_port, s3_client
from tests.helpers.keras_models import breast_cancer_lite_candidate, chest_ct_candidate
from tests.helpers.models import REPO_ROOT, breast_cancer_candidate, publish
from tests.helpers.skin_lesion import skin_lesion_candidate

BUCKET = "med-classifier-models-e2e"


def write_env_file(path, moto_url: str, refresh_seconds: int = 1):
    path.write_text(json.dumps({"Parameters": {
        "AWS_ENDPOINT_URL": moto_url, "MODELS_BUCKET": BUCKET, "POINTER_REFRESH_SECONDS": str(refresh_seconds),
        "MAX_PREDICT_ROWS": "100", "POWERTOOLS_LOG_LEVEL": "WARNING"}}))
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
    client.create_bucket(Bucket=BUCKET)
    store = ModelStore(BUCKET, client)
    first = publish(store, breast_cancer_candidate())
    for candidate in (breast_cancer_lite_candidate(), chest_ct_candidate(), skin_lesion_candidate()):
        publish(store, candidate)  # smoke-trained on synthetic data, once per session
    env_file = write_env_file(tmp_path_factory.mktemp("env") / "env.json", moto_server.url)
    port = free_port()
    api = LocalApi(str(REPO_ROOT / "template.yaml"), env_vars_path=str(env_file), host="127.0.0.1", port=port)
    api.start()
    session = requests.Session()
    yield {"url": f"http://127.0.0.1:{port}", "store": store, "s3": client, "first": first, "http": session}
    session.close()
    api.stop()
