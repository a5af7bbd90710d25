"""Contract test for the Docker-free local runner (scripts/local_runner).

Part 1 fails loudly when an aws-sam-cli upgrade changes the SAM CLI internals the runner is built on.
Part 2 serves tests/fixtures/runner_template over real HTTP and checks that requests, responses, errors, warm reuse,
timeouts and crashes behave as under ``sam local start-api``.
"""

import base64
import inspect
import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import samcli
import yaml
from flask import Flask
from samcli.commands.local.cli_common.invoke_context import InvokeContext
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
from samcli.lib.providers.api_provider import ApiProvider
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.lib.utils.codeuri import resolve_code_path
from samcli.lib.utils.stream_writer import StreamWriter
from samcli.local.apigw.event_constructor import _should_base64_encode
from samcli.local.apigw.local_apigw_service import LocalApigwService
from samcli.local.lambdafn.env_vars import EnvironmentVariables
from samcli.local.lambdafn.runtime import LambdaRuntime

from scripts.local_runner import FunctionError, LocalApi, WorkerProcessRuntime
from scripts.local_runner.api import yaml_safe_loader_preserved
from tests.helpers.runner_projects import process_exists

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "runner_template"
FIXTURE_TEMPLATE = FIXTURE_DIR / "template.yaml"
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
ENV_VARS = {
    "Parameters": {"FROM_ENV_FILE": "all-functions", "NOT_DECLARED": "ignored: not declared in the template"},
    "EchoFunction": {"FROM_ENV_FILE": "echo-only"},
}
INTERNAL_SERVER_ERROR = {"message": "Internal server error"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parameter_names(function) -> list:
    return list(inspect.signature(function).parameters)


def fixture_stacks(parameter_overrides=None) -> list:
    with yaml_safe_loader_preserved():  # keep SAM CLI's YAML patching out of the rest of the test session
        stacks, _ = SamLocalStackProvider.get_stacks(str(FIXTURE_TEMPLATE), parameter_overrides=parameter_overrides)
    return stacks


# --- Part 1: the SAM CLI internals the runner relies on --------------------------------------------------------------


def test_sam_cli_is_the_pinned_version():
    pin = re.search(r"^aws-sam-cli==(\S+)\s*$", (REPO_ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pin, "requirements.txt must pin aws-sam-cli exactly (aws-sam-cli==X.Y.Z): the local runner uses internals"
    assert samcli.__version__ == pin.group(1), (
        f"aws-sam-cli {samcli.__version__} is installed but requirements.txt pins {pin.group(1)}. The local runner "
        "(scripts/local_runner) is built on SAM CLI internals: re-run this test file after changing the pin."
    )


@pytest.mark.parametrize(
    ("internal", "required_parameters"),
    [
        (SamLocalStackProvider.get_stacks, ["template_file", "parameter_overrides"]),
        (SamFunctionProvider.__init__, ["self", "stacks"]),
        (ApiProvider.__init__, ["self", "stacks", "cwd"]),
        (
            LocalLambdaRunner.__init__,
            ["self", "local_runtime", "function_provider", "cwd", "real_path", "env_vars_values"],
        ),
        (LocalLambdaRunner.get_function, ["self", "function_identifier"]),
        (LocalLambdaRunner.get_invoke_config, ["self", "function"]),
        (LocalApigwService.__init__, ["self", "api", "lambda_runner", "port", "host", "stderr"]),
        (LocalApigwService.create, ["self"]),
        (InvokeContext._get_env_vars_value, ["filename"]),
        (EnvironmentVariables.resolve, ["self"]),
        (StreamWriter.__init__, ["self", "stream", "auto_flush"]),
        (StreamWriter.write_str, ["self", "output"]),
        (resolve_code_path, ["cwd", "codeuri"]),
        (_should_base64_encode, ["binary_types", "request_mimetype"]),
    ],
    ids=lambda value: getattr(value, "__qualname__", ""),
)
def test_sam_cli_internal_signature(internal, required_parameters):
    missing = [name for name in required_parameters if name not in parameter_names(internal)]
    assert not missing, (
        f"aws-sam-cli {samcli.__version__}: {internal.__qualname__} no longer takes {missing}; "
        "scripts/local_runner must be adapted to this SAM CLI version."
    )


def test_runtime_invoke_has_the_signature_of_sam_cli_lambda_runtime():
    assert parameter_names(WorkerProcessRuntime.invoke) == parameter_names(LambdaRuntime.invoke), (
        f"aws-sam-cli {samcli.__version__} changed LambdaRuntime.invoke; "
        "WorkerProcessRuntime.invoke must take the same parameters."
    )


def test_local_lambda_runner_hands_the_runtime_what_it_reads(tmp_path):
    calls = []

    class RecordingRuntime:
        def invoke(self, *args, **kwargs):
            calls.append((args, kwargs))

    env_vars_file = tmp_path / "env.json"
    env_vars_file.write_text(json.dumps(ENV_VARS))
    stacks = fixture_stacks({"Greeting": "hi"})
    runner = LocalLambdaRunner(
        local_runtime=RecordingRuntime(),
        function_provider=SamFunctionProvider(stacks),
        cwd=str(FIXTURE_DIR),
        real_path=str(FIXTURE_DIR),
        env_vars_values=InvokeContext._get_env_vars_value(str(env_vars_file)),
    )
    runner.invoke("EchoFunction", "{}", stdout=StreamWriter(io.StringIO()), stderr=StreamWriter(io.StringIO()))

    ((args, kwargs),) = calls
    inspect.signature(WorkerProcessRuntime.invoke).bind(None, *args, **kwargs)  # TypeError if the call changed
    config = args[0]
    assert (config.name, config.full_path, config.handler, config.runtime) == (
        "EchoFunction",
        "EchoFunction",
        "app.lambda_handler",
        "python3.12",
    )
    assert (config.packagetype, config.memory, config.timeout, config.durable_config) == ("Zip", 256, 3, None)
    assert config.code_abs_path == str(FIXTURE_DIR / "echo")
    (layer,) = config.layers
    assert layer.is_defined_within_template and layer.name == "FixtureLayer"
    assert resolve_code_path(str(FIXTURE_DIR), layer.codeuri) == str(FIXTURE_DIR / "layer")
    environment = config.env_vars.resolve()
    assert environment["GREETING"] == "hi"
    assert environment["FROM_ENV_FILE"] == "echo-only"
    assert "NOT_DECLARED" not in environment
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == "EchoFunction"
    assert {"AWS_REGION", "AWS_ACCOUNT_ID"} <= environment.keys()


def test_local_apigw_service_exposes_its_flask_app_after_create():
    stacks = fixture_stacks()
    runner = LocalLambdaRunner(WorkerProcessRuntime(str(FIXTURE_DIR)), SamFunctionProvider(stacks), "", "")
    service = LocalApigwService(ApiProvider(stacks).api, runner, port=3000, host="127.0.0.1")
    service.create()
    assert isinstance(service._app, Flask), (
        "LocalApi serves LocalApigwService._app with werkzeug's make_server; "
        f"aws-sam-cli {samcli.__version__} no longer provides it after create()."
    )


# --- Part 2: the fixture API over HTTP -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env_vars_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("runner") / "env.json"
    path.write_text(json.dumps(ENV_VARS))
    return path


@pytest.fixture(scope="module")
def local_api(env_vars_file):
    api = LocalApi(
        str(FIXTURE_TEMPLATE),
        env_vars_path=str(env_vars_file),
        host="127.0.0.1",
        port=free_port(),
        parameter_overrides={"Greeting": "overridden"},
    )
    api.start()
    yield api
    api.stop()


def get_item(api: LocalApi) -> dict:
    response = requests.get(f"{api.url}/items/7", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_get_passes_path_and_query_parameters_environment_layer_and_context(local_api):
    response = requests.get(f"{local_api.url}/items/42?color=red&size=L", timeout=10)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    echo = response.json()  # the handler's print() went to the log, not into the body
    assert echo["httpMethod"] == "GET"
    assert echo["path"] == "/items/42"
    assert echo["pathParameters"] == {"item_id": "42"}
    assert echo["queryStringParameters"] == {"color": "red", "size": "L"}
    assert echo["body"] is None
    assert echo["isBase64Encoded"] is False
    assert echo["environment"] == {
        "GREETING": "overridden",  # template parameter override
        "FROM_ENV_FILE": "echo-only",  # function entry of the env-vars file beats "Parameters"
        "FUNCTION_ONLY": "set-in-template",
        "NOT_DECLARED": None,  # as in sam local, the env-vars file only overrides declared variables
        "AWS_LAMBDA_FUNCTION_NAME": "EchoFunction",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SAM_LOCAL": "true",
        "AWS_LAMBDA_RUNTIME_API": None,
    }
    assert echo["layer"] == "from-fixture-layer"
    context = echo["context"]
    assert context["function_name"] == "EchoFunction"
    assert context["memory_limit_in_mb"] == "256"
    assert re.fullmatch(r"[0-9a-f-]{36}", context["aws_request_id"])
    assert context["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:EchoFunction"
    assert context["log_group_name"] == "aws/lambda/EchoFunction"
    assert 0 < context["remaining_time_in_millis"] <= 3000


def test_post_json_body_arrives_as_text(local_api):
    payload = {"instances": [[1.0, 2.5]], "note": "é"}
    response = requests.post(f"{local_api.url}/items/9", json=payload, timeout=10)

    assert response.status_code == 200, response.text
    echo = response.json()
    assert echo["httpMethod"] == "POST"
    assert echo["isBase64Encoded"] is False
    assert json.loads(echo["body"]) == payload


def test_post_binary_media_type_arrives_base64_encoded(local_api):
    image = base64.b64decode(PNG_BASE64)
    response = requests.post(f"{local_api.url}/items/9", data=image, headers={"Content-Type": "image/png"}, timeout=10)

    assert response.status_code == 200, response.text
    echo = response.json()
    assert echo["isBase64Encoded"] is True
    assert base64.b64decode(echo["body"]) == image


def test_a_text_body_that_is_not_utf8_is_400_in_the_error_shape_not_502(local_api):
    # SAM CLI decodes a body of a non-binary media type as UTF-8 and answered 502 when it could not.
    before = get_item(local_api)
    headers = {"Content-Type": "application/json"}
    response = requests.post(f"{local_api.url}/items/9", data=b'{"a": "\xff"}', headers=headers, timeout=10)

    assert (response.status_code, response.headers["Content-Type"]) == (400, "application/json")
    assert response.json() == {
        "error": {
            "code": "invalid_body_encoding",
            "message": "The request body is not UTF-8 (at byte 7): JSON must be UTF-8 encoded.",
            "details": [],
        }
    }
    assert get_item(local_api)["invocations"] == before["invocations"] + 1  # the function was not invoked
    # Under a binary media type the same bytes reach the function, base64-encoded.
    response = requests.post(
        f"{local_api.url}/items/9", data=b"\xff", headers={"Content-Type": "image/png"}, timeout=10
    )
    assert response.status_code == 200 and base64.b64decode(response.json()["body"]) == b"\xff"


def test_base64_encoded_response_is_decoded_for_binary_media_type(local_api):
    response = requests.get(f"{local_api.url}/image", headers={"Accept": "image/png"}, timeout=10)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/png"
    assert response.content == base64.b64decode(PNG_BASE64)


def test_worker_stays_warm_between_requests(local_api):
    first, second = get_item(local_api), get_item(local_api)

    assert second["pid"] == first["pid"]
    assert second["invocations"] == first["invocations"] + 1


def test_handler_exception_gives_502_and_the_worker_keeps_serving(local_api):
    before = get_item(local_api)

    response = requests.get(f"{local_api.url}/boom", timeout=10)

    assert response.status_code == 502
    assert response.json() == INTERNAL_SERVER_ERROR
    after = get_item(local_api)
    assert after["pid"] == before["pid"]  # an exception does not reset a Lambda execution environment
    assert after["invocations"] == before["invocations"] + 2


def test_crashed_worker_is_replaced_on_the_next_request(local_api):
    before = get_item(local_api)

    response = requests.get(f"{local_api.url}/crash", timeout=10)

    # A Runtime.ExitError payload has exactly errorMessage and errorType, which SAM's parser maps to a 500.
    assert response.status_code == 500
    assert response.json() == INTERNAL_SERVER_ERROR
    after = get_item(local_api)
    assert after["pid"] != before["pid"]
    assert after["invocations"] == 1
    assert not process_exists(before["pid"])


def test_timeout_is_enforced_and_a_new_worker_takes_over(local_api):
    before = get_item(local_api)

    started = time.monotonic()
    # The handler sleeps 30 s: an answer within the client's 20 s means the runner cut it short.
    response = requests.get(f"{local_api.url}/sleep", timeout=20)
    elapsed = time.monotonic() - started

    assert response.status_code == 502
    assert response.json() == INTERNAL_SERVER_ERROR
    assert elapsed >= 3, f"Timeout: 3 but the worker was stopped after {elapsed:.1f} s"
    assert not process_exists(before["pid"])
    after = get_item(local_api)
    assert after["pid"] != before["pid"]
    assert after["invocations"] == 1


def test_direct_invocation_returns_the_handler_result(local_api):
    result = local_api.invoke_function("EchoFunction", {"path": "/direct", "body": "hello"})

    assert result["statusCode"] == 200
    echo = json.loads(result["body"])
    assert (echo["path"], echo["body"]) == ("/direct", "hello")


def test_direct_invocation_of_a_raising_handler_raises_function_error(local_api):
    with pytest.raises(FunctionError) as failure:
        local_api.invoke_function("EchoFunction", {"path": "/boom"})

    assert failure.value.error_type == "RuntimeError"
    error = json.loads(failure.value.payload)
    assert error["errorMessage"] == "boom"
    assert set(error) == {"errorMessage", "errorType", "requestId", "stackTrace"}


def test_init_failure_is_the_result_of_every_invocation(local_api):
    for _ in range(2):
        with pytest.raises(FunctionError) as failure:
            local_api.invoke_function("BrokenFunction", {})
        assert failure.value.error_type == "Runtime.HandlerNotFound"
        assert "Handler 'no_such_handler' missing on module 'app'" in failure.value.payload


def test_template_parsing_leaves_yaml_safe_load_as_it_was():
    # SAM CLI's parser re-registers yaml.SafeLoader constructors; in-process users (MLflow) must not see that.
    document = "day: 2024-05-01\nnested: {a: 1}\n"
    before = yaml.safe_load(document)

    LocalApi(str(FIXTURE_TEMPLATE))

    after = yaml.safe_load(document)
    assert (after, type(after), type(after["day"])) == (before, type(before), type(before["day"]))


def test_stop_frees_the_port_and_leaves_no_worker_process(env_vars_file):
    api = LocalApi(str(FIXTURE_TEMPLATE), env_vars_path=str(env_vars_file), port=free_port())
    api.start()
    worker_pid = get_item(api)["pid"]

    api.stop()

    assert not process_exists(worker_pid)
    with socket.socket() as sock:
        # As a restarted server binds (werkzeug sets SO_REUSEADDR): the connections the server closed
        # may linger in TIME_WAIT, but a listening socket left open would still make this fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((api.host, api.port))  # OSError if the port were still taken


def test_command_line_serves_until_sigterm():
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "scripts.local_runner",
        "start-api",
        "--template",
        str(FIXTURE_TEMPLATE),
        "--port",
        str(port),
        "--parameter-overrides",
        "Greeting=from-cli",
    ]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        echo = None
        deadline = time.monotonic() + 20
        while echo is None and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            try:
                echo = requests.get(f"http://127.0.0.1:{port}/items/1", timeout=5).json()
            except requests.ConnectionError:
                time.sleep(0.2)
        assert echo is not None, "the CLI did not start serving within 20 s"
        assert echo["environment"]["GREETING"] == "from-cli"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)

    assert process.returncode == 0, output
    assert f"Mounting EchoFunction at http://127.0.0.1:{port}/items/{{item_id}} [GET, POST]" in output
    assert not process_exists(echo["pid"])
