"""Each function carries the layers it needs and no more. The two that run a model carry
InferenceRuntimeLayer (onnxruntime, numpy, Pillow); the four that never do carry
ServiceRuntimeLayer (Powertools, pydantic), the retraining API with NumpyRuntimeLayer beside it.

Proved by importing each handler in a fresh interpreter that sees only what Lambda would give
it: the standard library, the function's folder, the python/ folder of each source layer, the
packages pinned by each makefile layer and the boto3 the Lambda runtime provides; nothing else
of the dev venv. tests/integration/test_function_layers_on_moto.py calls the handlers there too."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from scripts.lambda_path import (
    LAMBDA_RUNTIME_DISTRIBUTIONS,
    LAYERS,
    MAKEFILE_LAYERS,
    REPO_ROOT,
    function_layers,
    lambda_sys_path,
    layer_dir,
    layer_pins,
    pinned_versions,
)
from tests.unit.test_template import DEV_LOCK_PATH, FUNCTIONS, GLOBAL_FUNCTION, LAMBDA_RUNTIME

SHARED_MAKEFILE_FRAGMENT = REPO_ROOT / "layers" / "python-layer.mk"
MODEL_FUNCTIONS = ("PredictFunction", "ImagePredictFunction")
INTENDED_LAYERS = {
    "PredictFunction": ["InferenceRuntimeLayer", "SharedCodeLayer"],
    "ImagePredictFunction": ["InferenceRuntimeLayer", "SharedCodeLayer"],
    # numpy: api/request_guard.py scans JSON bodies with it, and api/schemas.py imports domain/inference.py.
    "RetrainingApiFunction": ["ServiceRuntimeLayer", "NumpyRuntimeLayer", "SharedCodeLayer"],
    "UploadCounterFunction": ["ServiceRuntimeLayer", "SharedCodeLayer"],
    "JobStateFunction": ["ServiceRuntimeLayer", "SharedCodeLayer"],
    "ReconcilerFunction": ["ServiceRuntimeLayer", "SharedCodeLayer"],
    "PreTrafficHookFunction": ["ServiceRuntimeLayer", "SharedCodeLayer"],
    "DriftMonitorFunction": ["ServiceRuntimeLayer", "SharedCodeLayer"],  # domain/drift.py is pure Python
}
MODEL_DISTRIBUTIONS = {"onnxruntime", "numpy", "pillow"}  # imported as onnxruntime, numpy, PIL
# onnxruntime's declared dependencies that only its offline tooling imports (layers/runtime/requirements.txt).
LEFT_OUT_ON_PURPOSE = {"flatbuffers", "packaging", "protobuf"}
LAMBDA_MARKERS = {"python_version": "3.12", "sys_platform": "linux", "platform_system": "Linux", "extra": ""}

# Runs in the restricted interpreter: imports the handler, calls it on each event, reports what was imported.
RUNNER = """
import importlib, json, sys
args = json.loads(sys.argv[1])
sys.path[:0] = args["path"]

class Context:
    function_name = args["function"]
    memory_limit_in_mb = "256"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + args["function"]
    aws_request_id = "layer-test"
    def get_remaining_time_in_millis(self):
        return 60_000

module_name, handler_name = args["handler"].rsplit(".", 1)
handler = getattr(importlib.import_module(module_name), handler_name)
results = [handler(event, Context()) for event in args["events"]]
with open(args["out"], "w") as out:
    json.dump({"modules": sorted({name.partition(".")[0] for name in sys.modules}), "results": results}, out)
"""


def carried_pins(function: str) -> dict[str, str]:
    return {name: version for layer in function_layers(function) for name, version in layer_pins(layer).items()}


def function_environment(function: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The function's template variables with the local env-vars file's values, and AWS test credentials."""
    local = json.loads((REPO_ROOT / "events" / "env.json").read_text())["Parameters"]
    variables = {
        **GLOBAL_FUNCTION["Environment"]["Variables"],
        **FUNCTIONS[function]["Properties"]["Environment"]["Variables"],
    }
    environment = {name: local.get(name, value if isinstance(value, str) else "") for name, value in variables.items()}
    credentials = {k: v for k, v in os.environ.items() if k.startswith("AWS_") and k not in environment}
    return {**credentials, **environment, **(overrides or {})}


def run_in_lambda_path(
    function: str,
    tmp_path: Path,
    *,
    layers: list[str] | None = None,
    events: Sequence[dict] = (),
    environment: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Import the function's handler (and call it on `events`) in a fresh interpreter whose path holds
    only the function's folder, its layers and the Lambda runtime's packages. The report is in
    `tmp_path / "report.json"`."""
    properties = FUNCTIONS[function]["Properties"]
    path = lambda_sys_path(function, tmp_path, layers)
    args = {"path": path, "function": function, "handler": properties["Handler"], "events": list(events)}
    args["out"] = str(tmp_path / "report.json")
    return subprocess.run(
        # -I -S: no site-packages, no user site, no PYTHON* variables: only the path above and the standard library.
        [sys.executable, "-I", "-S", "-c", RUNNER, json.dumps(args)],
        env=environment or function_environment(function),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def report(result: subprocess.CompletedProcess, tmp_path: Path) -> dict:
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((tmp_path / "report.json").read_text())


# --- the template ---------------------------------------------------------------------------


def test_every_function_has_its_intended_layers():
    assert set(INTENDED_LAYERS) == set(FUNCTIONS)
    assert {function: function_layers(function) for function in FUNCTIONS} == INTENDED_LAYERS


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_only_the_functions_that_run_a_model_carry_onnxruntime_and_pillow(function):
    carried = set(carried_pins(function)) & {"onnxruntime", "pillow"}
    assert carried == ({"onnxruntime", "pillow"} if function in MODEL_FUNCTIONS else set())


def test_the_service_layer_holds_no_model_package():
    pins = layer_pins("ServiceRuntimeLayer")
    assert {"aws-lambda-powertools", "pydantic"} <= set(pins)
    assert set(pins) & MODEL_DISTRIBUTIONS == set()


@pytest.mark.parametrize("layer", MAKEFILE_LAYERS)
def test_each_makefile_layer_is_built_alike_for_the_template_architecture(layer):
    resource = LAYERS[layer]
    assert resource["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": {"Ref": "Architecture"}}
    assert resource["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    assert resource["Properties"]["CompatibleRuntimes"] == [LAMBDA_RUNTIME]
    makefile = (layer_dir(layer) / "Makefile").read_text()
    assert re.search(rf"^build-{layer}: layer$", makefile, re.MULTILINE)
    assert re.search(r"^include \$\(LAYER_DIR\)python-layer\.mk$", makefile, re.MULTILINE)
    # A link inside the layer's folder: SAM's cached builds hash that folder, so the shared logic counts.
    fragment = layer_dir(layer) / "python-layer.mk"
    assert fragment.is_symlink() and fragment.resolve() == SHARED_MAKEFILE_FRAGMENT


@pytest.mark.parametrize("layer", MAKEFILE_LAYERS)
def test_each_makefile_layer_pins_the_dev_lock_versions_and_no_boto3(layer):
    pins = layer_pins(layer)
    lock = pinned_versions(DEV_LOCK_PATH.read_text())
    assert pins and {name: lock.get(name) for name in pins} == pins
    assert set(pins) & {"boto3", "botocore"} == set()  # the Lambda runtime provides them


@pytest.mark.parametrize("layer", MAKEFILE_LAYERS)
def test_each_makefile_layer_is_a_complete_closure(layer):
    # Installed with pip --no-deps: a dependency missing here would be missing on Lambda.
    pins = layer_pins(layer)
    provided = set(pins) | {name.lower() for name in LAMBDA_RUNTIME_DISTRIBUTIONS} | LEFT_OUT_ON_PURPOSE
    missing = {
        f"{name} needs {requirement.name}"
        for name in pins
        for requirement in map(Requirement, importlib.metadata.requires(name) or [])
        if (requirement.marker is None or requirement.marker.evaluate(LAMBDA_MARKERS))
        and re.sub(r"[-_.]+", "-", requirement.name).lower() not in provided
    }
    assert missing == set()


# --- importing each handler with only its layers --------------------------------------------


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_each_handler_imports_with_only_its_layers(function, tmp_path):
    imported = set(report(run_in_lambda_path(function, tmp_path), tmp_path)["modules"])
    assert {"aws_lambda_powertools", "pydantic", "med_classifier"} <= imported
    if function not in MODEL_FUNCTIONS:
        assert imported & {"onnxruntime", "PIL"} == set()
        # numpy is carried exactly when the handler needs it (drop NumpyRuntimeLayer once it does not).
        assert ("numpy" in imported) == ("NumpyRuntimeLayer" in function_layers(function))


@pytest.mark.parametrize(
    "function, left_out, module",
    [
        ("JobStateFunction", "ServiceRuntimeLayer", "aws_lambda_powertools"),
        ("RetrainingApiFunction", "NumpyRuntimeLayer", "numpy"),
        ("UploadCounterFunction", "SharedCodeLayer", "med_classifier"),
    ],
)
def test_without_a_layer_it_needs_a_handler_does_not_import(function, left_out, module, tmp_path):
    # The restricted interpreter really is restricted: the dev venv has every one of these modules.
    layers = [layer for layer in function_layers(function) if layer != left_out]
    result = run_in_lambda_path(function, tmp_path, layers=layers)
    assert result.returncode != 0
    assert f"ModuleNotFoundError: No module named '{module}'" in result.stderr
