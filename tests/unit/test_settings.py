"""Each function's settings model: what it reads, its defaults and refusals, and the
template giving every function exactly the variables its model declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from samcli.yamlhelper import yaml_parse

from med_classifier.settings import (
    FUNCTION_SETTINGS,
    ImagePredictSettings,
    PredictSettings,
    RetrainingApiSettings,
    UploadCounterSettings,
)
from scripts.local_runner.api import yaml_safe_loader_preserved
from tests.unit.test_template import TEMPLATE_PATH

with yaml_safe_loader_preserved():
    TEMPLATE = yaml_parse(TEMPLATE_PATH.read_text())
# Read by the libraries themselves (Powertools, pydantic) in every function, not by our settings.
LIBRARY_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "PYDANTIC_DISABLE_PLUGINS",
}
RETRAINING = {"UPLOAD_COUNTS_TABLE": "counts", "JOBS_TABLE": "jobs", "UPLOADS_BUCKET": "up", "MODELS_BUCKET": "m"}


def thresholds(environ: dict) -> tuple[int, dict[str, int]]:
    return UploadCounterSettings.from_environ({**RETRAINING, **environ}).thresholds


def function_variables(logical_id: str) -> set[str]:
    globals_ = TEMPLATE["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    own = TEMPLATE["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return set(globals_) | set(own)


@pytest.mark.parametrize("logical_id", sorted(FUNCTION_SETTINGS))
def test_the_template_gives_each_function_exactly_the_variables_its_settings_read(logical_id):
    assert function_variables(logical_id) - LIBRARY_VARIABLES == FUNCTION_SETTINGS[logical_id].variables()


def test_every_function_in_the_template_has_a_settings_model():
    functions = {name for name, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions == set(FUNCTION_SETTINGS)


def test_globals_hold_only_what_every_function_reads():
    assert set(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]) == {"AWS_ENDPOINT_URL"} | LIBRARY_VARIABLES


def test_pydantic_looks_for_no_plugins_in_any_function():
    # pydantic's plugin search reads every installed package's metadata at the first model (cold start).
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["PYDANTIC_DISABLE_PLUGINS"] == "__all__"


def test_threshold_defaults_and_empty_variables_count_as_unset():
    assert thresholds({}) == (50, {})
    assert thresholds({"RETRAIN_THRESHOLD": "", "RETRAIN_THRESHOLDS": ""}) == (50, {})


def test_per_model_thresholds_are_numbers_by_model():
    assert thresholds({"RETRAIN_THRESHOLD": "1", "RETRAIN_THRESHOLDS": '{"chest-ct": "2"}'}) == (1, {"chest-ct": 2})
    assert thresholds({"RETRAIN_THRESHOLD": "1", "RETRAIN_THRESHOLDS": '{"chest-ct": 1}'}) == (1, {"chest-ct": 1})


@pytest.mark.parametrize(
    "environ, field",
    [
        ({"RETRAIN_THRESHOLD": "0"}, "RETRAIN_THRESHOLD"),
        ({"RETRAIN_THRESHOLD": "-3"}, "RETRAIN_THRESHOLD"),
        ({"RETRAIN_THRESHOLDS": '{"chest-ct": 0}'}, "RETRAIN_THRESHOLDS"),
        ({"RETRAIN_THRESHOLDS": '{"chest-ct": 4, "skin-lesion": -1}'}, "RETRAIN_THRESHOLDS"),
    ],
)
def test_thresholds_below_one_are_refused(environ, field):
    with pytest.raises(ValidationError) as info:
        thresholds(environ)
    (error,) = info.value.errors()
    assert (error["loc"], error["msg"]) == ((field,), "Value error, retrain thresholds must be at least 1")


def test_an_unknown_backend_is_refused_naming_the_choices():
    with pytest.raises(ValidationError) as info:
        UploadCounterSettings.from_environ({**RETRAINING, "RETRAIN_BACKEND": "emr"})
    assert info.value.errors()[0]["msg"] == (
        "Value error, RETRAIN_BACKEND must be one of ('sagemaker', 'batch'), not 'emr'"
    )


def test_the_backend_name_is_case_and_space_insensitive():
    assert UploadCounterSettings.from_environ({**RETRAINING, "RETRAIN_BACKEND": " Batch "}).retrain_backend == "batch"


def test_extra_hyperparameters_are_json_and_become_strings():
    settings = UploadCounterSettings.from_environ({**RETRAINING, "RETRAIN_HYPERPARAMETERS": '{"epochs": 3}'})
    assert settings.launch().extra_hyperparameters == {"epochs": "3"}


def test_a_missing_required_variable_is_named():
    with pytest.raises(ValidationError) as info:
        PredictSettings.from_environ({})
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [(("MODELS_BUCKET",), "missing")]


def test_serving_defaults():
    settings = ImagePredictSettings.from_environ({"MODELS_BUCKET": "m"})
    assert (settings.pointer_refresh_seconds, settings.endpoint_url) == (60.0, None)
    assert (settings.image_limits.max_bytes, settings.image_limits.max_images, settings.max_image_pixels) == (
        4 * 1024 * 1024,
        16,
        2048 * 2048,
    )
    assert (settings.max_request_pixels, settings.max_request_bytes) == (3 * 2048 * 2048, 6 * 1024 * 1024)
    assert PredictSettings.from_environ({"MODELS_BUCKET": "m"}).max_request_bytes == 2 * 1024 * 1024
    assert RetrainingApiSettings.from_environ(RETRAINING).max_request_bytes == 64 * 1024


def test_limits_come_from_their_variables():
    settings = ImagePredictSettings.from_environ(
        {
            "MODELS_BUCKET": "m",
            "MAX_IMAGE_BYTES": "10",
            "MAX_IMAGES_PER_REQUEST": "2",
            "MAX_IMAGE_PIXELS": "99",
            "MAX_REQUEST_PIXELS": "98",
            "MAX_REQUEST_BYTES": "97",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        }
    )
    assert (settings.image_limits.max_bytes, settings.image_limits.max_images, settings.max_image_pixels) == (10, 2, 99)
    assert (settings.max_request_pixels, settings.max_request_bytes) == (98, 97)
    assert PredictSettings.from_environ({"MODELS_BUCKET": "m", "MAX_REQUEST_BYTES": "96"}).max_request_bytes == 96
    assert settings.endpoint_url == "http://127.0.0.1:5000"
    uploads = RetrainingApiSettings.from_environ(
        {**RETRAINING, "MAX_UPLOAD_BYTES": "7", "UPLOAD_URL_EXPIRES_SECONDS": "60"}
    ).upload_limits
    assert (uploads.max_bytes, uploads.expires_in) == (7, 60)
    assert RetrainingApiSettings.from_environ({**RETRAINING, "MAX_REQUEST_BYTES": "95"}).max_request_bytes == 95


def test_the_predict_function_shows_retraining_only_with_both_tables():
    assert not PredictSettings.from_environ({"MODELS_BUCKET": "m", "UPLOAD_COUNTS_TABLE": "c"}).shows_retraining
    assert PredictSettings.from_environ(
        {"MODELS_BUCKET": "m", "UPLOAD_COUNTS_TABLE": "c", "JOBS_TABLE": "j"}
    ).shows_retraining


def test_an_empty_endpoint_in_the_process_environment_is_removed(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    monkeypatch.setenv("MODELS_BUCKET", "m")
    import os

    assert PredictSettings.from_environ().endpoint_url is None
    assert "AWS_ENDPOINT_URL" not in os.environ


# --- where the environment is read -------------------------------------------------------------

REPO = TEMPLATE_PATH.parent
SETTINGS_MODULES = {"layers/shared/python/med_classifier/settings.py", "training/settings.py"}
# The local runner plays Lambda's runtime: it hands the host's environment to workers and job
# processes and reads AWS_LAMBDA_* in the worker as the runtime does. That is plumbing, not settings.
LAMBDA_EMULATION = "scripts/local_runner/"


def environment_reads(roots: tuple[str, ...], repo=REPO) -> list[str]:
    """Reads of a variable (`os.environ.get`, `os.environ[...]`, `in os.environ`, `os.getenv`) outside
    the settings modules. Writes (update, setdefault, item assignment: configuring libraries) and
    copying the whole environment into a child process's are allowed."""
    import ast

    found = []
    for root in roots:
        for path in sorted((repo / root).rglob("*.py")):
            name = str(path.relative_to(repo))
            if name in SETTINGS_MODULES or name.startswith(LAMBDA_EMULATION):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if _reads_environment(node):
                    found.append(f"{name}:{node.lineno}")
    return found


def _is_environ(node) -> bool:
    import ast

    return isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)


def _reads_environment(node) -> bool:
    import ast

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in ("get", "pop") and _is_environ(node.func.value):
            return True
        return node.func.attr == "getenv"
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
        return True
    return isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators)


def test_layers_and_functions_never_mention_os_environ_outside_settings():
    offenders = []
    for root in ("layers", "functions"):
        for path in sorted((REPO / root).rglob("*.py")):
            name = str(path.relative_to(REPO))
            if name not in SETTINGS_MODULES and "os.environ" in path.read_text():
                offenders.append(name)
    assert offenders == []


def test_training_and_scripts_read_the_environment_only_through_their_settings():
    assert environment_reads(("training", "scripts")) == []


def test_the_environment_check_sees_reads_but_not_writes(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "m.py").write_text(
        "import os\n"
        'a = os.environ.get("A")\n'
        'b = os.environ["B"]\n'
        'c = "C" in os.environ\n'
        'd = os.getenv("D")\n'
        "e = {**os.environ}\n"
        'f = os.environ.pop("F", None)\n'
        'os.environ["F"] = "1"\n'
        'os.environ.update({"G": "1"})\n'
        'os.environ.setdefault("H", "1")\n'
    )
    assert environment_reads(("code",), tmp_path) == [
        "code/m.py:2",
        "code/m.py:3",
        "code/m.py:4",
        "code/m.py:5",
        "code/m.py:7",
    ]


def test_training_settings_defaults_and_json_variables(tmp_path):
    from training.settings import REPO_ROOT, training_settings

    defaults = training_settings({"LOCAL_STATE_DIR": "", "MLFLOW_TRACKING_URI": ""})
    assert (defaults.state_dir, defaults.mlflow_store, defaults.ml_root) == (
        (REPO_ROOT / ".local").resolve(),
        (REPO_ROOT / ".local" / "mlflow").resolve(),
        Path("/opt/ml"),
    )
    assert defaults.retrain_hyperparameters is None and defaults.retrain_channels == {}
    batch = training_settings(
        {
            "LOCAL_STATE_DIR": str(tmp_path),
            "MLFLOW_LOCAL_DIR": str(tmp_path / "runs"),
            "RETRAIN_HYPERPARAMETERS": '{"model": "chest-ct"}',
            "RETRAIN_CHANNELS": '{"uploads": "s3://up/uploads/chest-ct/"}',
        }
    )
    assert (batch.state_dir, batch.mlflow_store) == (tmp_path.resolve(), tmp_path / "runs")
    assert batch.retrain_hyperparameters == {"model": "chest-ct"}
    assert batch.retrain_channels == {"uploads": "s3://up/uploads/chest-ct/"}
