"""The template's functions and API, served like ``sam local start-api`` by SAM CLI's own code, without Docker.

SAM CLI reads the template (``SamLocalStackProvider``, ``SamFunctionProvider``, ``ApiProvider``), resolves each
invocation (``LocalLambdaRunner``: code path, layers, environment variables, timeout) and emulates API Gateway
(``LocalApigwService``: routes, event construction, response parsing, binary media types). Only the runtime is
ours: ``WorkerProcessRuntime`` runs the handlers in warm worker processes.
"""

import io
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

import yaml
from samcli.commands.local.cli_common.invoke_context import InvokeContext
from samcli.commands.local.lib.exceptions import NoApisDefined
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
from samcli.lib.providers.api_provider import ApiProvider
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.lib.utils.stream_writer import StreamWriter
from samcli.local.apigw.event_constructor import _should_base64_encode
from samcli.local.apigw.local_apigw_service import LocalApigwService
from samcli.local.apigw.route import Route
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_input_stream

from med_classifier.api.request_guard import RequestRefused, check_utf8, proxy_error
from scripts.local_runner.runtime import InvocationResult, UnsupportedFunctionError, WorkerProcessRuntime

LOG = logging.getLogger(__name__)


@contextmanager
def yaml_safe_loader_preserved() -> Iterator[None]:
    """Undoes what SAM CLI's template parsing does to PyYAML process-wide.

    ``samcli.yamlhelper.yaml_parse`` registers constructors on ``yaml.SafeLoader`` (mappings become OrderedDicts,
    timestamps stay strings, ``!`` tags become intrinsics), which breaks ``yaml.safe_load`` users sharing the
    process, e.g. MLflow. SAM CLI re-registers them on every parse, so restoring them afterwards is safe.
    """
    classes = (yaml.constructor.SafeConstructor, yaml.SafeLoader)
    names = ("yaml_constructors", "yaml_multi_constructors")
    saved = {(cls, name): dict(cls.__dict__[name]) for cls in classes for name in names if name in cls.__dict__}
    try:
        yield
    finally:
        for cls in classes:
            for name in names:
                if (cls, name) in saved:
                    setattr(cls, name, saved[cls, name])
                elif name in cls.__dict__:
                    delattr(cls, name)


class FunctionError(Exception):
    """A direct invocation failed: the handler raised, its init failed, it timed out or its process died."""

    def __init__(self, function_name: str, result: InvocationResult) -> None:
        super().__init__(f"{function_name} failed with {result.error_type}: {result.payload}")
        self.function_name = function_name
        self.error_type = result.error_type
        self.payload = result.payload


class LocalFunctions:
    """The template's Lambda functions, resolved by SAM CLI and run in warm worker processes.

    ``env_vars_path`` is a SAM env-vars file: ``{"Parameters": {...all functions...}, "<LogicalId>": {...}}``
    (or a .env file). ``parameter_overrides`` maps template parameter names to values.
    """

    def __init__(
        self,
        template: str,
        env_vars_path: str | None = None,
        parameter_overrides: dict[str, str] | None = None,
    ) -> None:
        self.template_path = os.path.abspath(template)
        # sam local resolves CodeUri and layer ContentUri against the template's directory.
        self.base_dir = os.path.dirname(self.template_path)
        with yaml_safe_loader_preserved():
            self.stacks, _ = SamLocalStackProvider.get_stacks(
                self.template_path, parameter_overrides=parameter_overrides
            )
        self.function_provider = SamFunctionProvider(self.stacks)
        self.runtime = WorkerProcessRuntime(self.base_dir)
        self.lambda_runner = LocalLambdaRunner(
            local_runtime=self.runtime,
            function_provider=self.function_provider,
            cwd=self.base_dir,
            real_path=self.base_dir,
            env_vars_values=InvokeContext._get_env_vars_value(env_vars_path),
        )
        self.log_stream = StreamWriter(sys.stderr, auto_flush=True)

    def start_workers(self) -> None:
        """Starts every function's worker so that their init runs now rather than on the first request."""
        for function in self.function_provider.get_all():
            config = self.lambda_runner.get_invoke_config(function)
            try:
                self.runtime.start_worker(config)
            except UnsupportedFunctionError as error:
                LOG.warning("Not started: %s", error)

    def invoke_function(self, logical_id: str, event: Any) -> Any:
        """Invokes a function directly, as Lambda's Invoke API would, and returns its decoded JSON result.

        Raises ``FunctionError`` if the invocation failed.
        """
        config = self.lambda_runner.get_invoke_config(self.lambda_runner.get_function(logical_id))
        result = self.runtime.run(config, json.dumps(event), self.log_stream)
        if result.error_type:
            raise FunctionError(logical_id, result)
        return json.loads(result.payload)

    def stop(self) -> None:
        self.runtime.stop()


def api_key_routes(stacks) -> list[tuple]:
    """(method, path regex) of every Api event with ``Auth: {ApiKeyRequired: true}``."""
    routes = []
    for stack in stacks:
        for resource in stack.resources.values():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            for event in (resource.get("Properties", {}).get("Events") or {}).values():
                properties = event.get("Properties", {})
                if event.get("Type") == "Api" and (properties.get("Auth") or {}).get("ApiKeyRequired"):
                    pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(properties["Path"]))
                    routes.append((properties["Method"].upper(), re.compile(f"^{pattern}$")))
    return routes


class ApiKeyCheck:
    """API Gateway's API-key check, which ``sam local`` does not emulate: a route with
    ``ApiKeyRequired`` answers 403 ``{"message": "Forbidden"}`` without a valid ``x-api-key``."""

    def __init__(self, app, routes: list[tuple], api_key: str | None) -> None:
        self.app, self.routes, self.api_key = app, routes, api_key

    def __call__(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        if any(method == m and pattern.match(path) for m, pattern in self.routes):
            if not self.api_key or environ.get("HTTP_X_API_KEY") != self.api_key:
                body = b'{"message":"Forbidden"}'
                start_response(
                    "403 FORBIDDEN", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
                )
                return [body]
        return self.app(environ, start_response)


class TextBodyCheck:
    """A body that is not UTF-8 under a media type the API does not declare binary: SAM CLI's event
    construction fails decoding it and answers 502; the functions answer such a body (arriving as base64
    or as text) 400 ``invalid_body_encoding`` (request_guard). This answers it so, before SAM CLI."""

    def __init__(self, app, binary_media_types: list[str]) -> None:
        self.app, self.binary_media_types = app, binary_media_types

    def __call__(self, environ, start_response):
        if _should_base64_encode(self.binary_media_types, Request(environ).mimetype):
            return self.app(environ, start_response)
        body = get_input_stream(environ).read()
        # The stream is consumed: SAM CLI's Flask request reads this copy.
        environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        try:
            check_utf8(body)
        except RequestRefused as refused:
            answer = proxy_error(refused.status_code, refused.code, refused.message)["body"].encode()
            start_response(
                f"{refused.status_code} {HTTPStatus(refused.status_code).phrase.upper()}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
            )
            return [answer]
        return self.app(environ, start_response)


class LocalApi:
    """``sam local start-api`` in-process: ``start()`` serves in a background thread, ``stop()`` ends everything.

    Usable as a context manager. ``warm`` starts every function's worker at ``start()``. ``api_key`` is the key
    that routes with ``ApiKeyRequired`` accept (as a usage plan's key would); without one they answer 403.
    """

    def __init__(
        self,
        template: str,
        env_vars_path: str | None = None,
        host: str = "127.0.0.1",
        port: int = 3000,
        parameter_overrides: dict[str, str] | None = None,
        warm: bool = True,
        api_key: str | None = None,
    ) -> None:
        self.functions = LocalFunctions(template, env_vars_path, parameter_overrides)
        self.api_key = api_key
        with yaml_safe_loader_preserved():  # a DefinitionUri is parsed here
            self.api = ApiProvider(self.functions.stacks, cwd=self.functions.base_dir).api
        self.host = host
        self.port = port
        self.warm = warm
        self._server: BaseWSGIServer | None = None
        self._serve_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def routes(self) -> list[Route]:
        return list(self.api.routes)

    def route_lines(self) -> list[str]:
        """The routes as ``sam local start-api`` announces them."""
        return [
            f"Mounting {route.function_name} at {self.url}{route.path} [{', '.join(route.methods)}]"
            for route in self.routes
        ]

    def start(self) -> None:
        if not self.api.routes:
            raise NoApisDefined("No APIs available in template")
        service = LocalApigwService(
            api=self.api,
            lambda_runner=self.functions.lambda_runner,
            port=self.port,
            host=self.host,
            stderr=self.functions.log_stream,
        )
        service.create()
        # LocalApigwService.run() blocks and installs signal handlers (main thread only); serving its Flask app
        # with werkzeug's server directly is what that run() does, minus those, and can be shut down.
        app = TextBodyCheck(service._app, self.api.binary_media_types)
        app = ApiKeyCheck(app, api_key_routes(self.functions.stacks), self.api_key)
        self._server = make_server(self.host, self.port, app, threaded=True)
        self._serve_thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)
        self._serve_thread.start()
        if self.warm:
            self.functions.start_workers()

    def stop(self) -> None:
        """Stops serving, frees the port and ends the worker processes."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._serve_thread.join()
            self._server = None
        self.functions.stop()

    def invoke_function(self, logical_id: str, event: Any) -> Any:
        """See ``LocalFunctions.invoke_function``."""
        return self.functions.invoke_function(logical_id, event)

    def __enter__(self) -> "LocalApi":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
