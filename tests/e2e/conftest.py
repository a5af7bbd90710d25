"""The local stack, started by the tests themselves: moto server + the Docker-free SAM runner."""

import pytest

from tests.helpers.local_stack import running_moto, running_stack

BUCKET = "med-classifier-models-e2e"
# chest-ct retrains after 4 uploads, skin-lesion after 5 (README's upload script); the others never do here.
RETRAIN_THRESHOLDS = {"chest-ct": 4, "skin-lesion": 5}


@pytest.fixture(scope="session")
def moto_server():
    with running_moto() as server:
        yield server


@pytest.fixture(scope="session")
def stack(moto_server, tmp_path_factory):
    with running_stack(moto_server, tmp_path_factory, bucket=BUCKET, retrain_thresholds=RETRAIN_THRESHOLDS) as running:
        yield running
