import os
import shutil

import pytest

from tests.helpers.shared_training import new_session_folder

# Fixtures that test modules opt into by name (pytest.mark.usefixtures).
pytest_plugins = ["tests.helpers.properties"]

# No test may reach AWS: dummy credentials and region for boto3/moto, no SAM telemetry.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "SAM_CLI_TELEMETRY": "0",
        "MPLBACKEND": "Agg",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


def pytest_configure(config):
    """The controlling process (not an xdist worker) makes the folder in which the workers share their
    smoke-trained models (tests/helpers/shared_training.py)."""
    if not hasattr(config, "workerinput"):
        config.shared_models_folder = new_session_folder()


def pytest_unconfigure(config):
    folder = getattr(config, "shared_models_folder", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """Isolated MLflow store and local mirror for one test."""
    monkeypatch.setenv("LOCAL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "state"


TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
LAYERS = ("unit", "integration", "e2e", "browser")


# Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`) these layers' tests run in one worker,
# in order: they share the session's local stacks, which a second worker would build again. Unit and
# integration tests spread over the other workers meanwhile, and so does a stack-layer module that
# starts a stack of its own and names its own xdist group (tests/e2e/test_make_run.py).
STACK_LAYERS = ("e2e", "browser")


# tryfirst: pytest-xdist reads the xdist_group markers in a hook of its own that would otherwise run first.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Every test carries the marker of its folder (unit, integration, e2e, browser), so
    `-m` selects layers the same way whatever files are added later."""
    for item in items:
        layer = os.path.relpath(str(item.path), TESTS_DIR).split(os.sep)[0]
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(LAYERS)}}}/")
        item.add_marker(layer)
        if layer in STACK_LAYERS and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group("local-stacks"))
