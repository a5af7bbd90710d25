"""What a predict function imports at cold start: its handler module alone, without the Powertools
resolver (routes.py is imported on the first request the fast path does not answer), the OpenAPI
machinery, the pydantic response models, boto3 (built at the first request) or onnxruntime, nor the
retraining loop's adapters and domain (GET /models/{model} builds them when it is asked for)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.models import REPO_ROOT

SHARED_LAYER = REPO_ROOT / "layers" / "shared" / "python"
NOT_AT_COLD_START = (
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.event_handler.openapi.params",
    "med_classifier.api.schemas",
    "med_classifier.api.openapi",
    "med_classifier.api.errors",
    "boto3",
    "onnxruntime",
    "med_classifier.adapters.launchers",
    "med_classifier.adapters.jobs_table",
    "med_classifier.adapters.upload_counter",
    "med_classifier.domain.jobs",
    "med_classifier.domain.retraining",
)
PROBE = f"""
import json, sys
import app
print(json.dumps({{"loaded": [m for m in {list(NOT_AT_COLD_START)!r} if m in sys.modules],
                   "routes": [m for m in sys.modules if m.endswith("_routes") or m == "routes"]}}))
"""


@pytest.mark.parametrize("function", ["predict", "image_predict"])
def test_the_handler_module_imports_no_resolver_and_no_client(function):
    env = {"PYTHONPATH": str(SHARED_LAYER), "PATH": "/usr/bin:/bin", "POWERTOOLS_METRICS_NAMESPACE": "Test"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT / "functions" / function, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"loaded": [], "routes": []}
