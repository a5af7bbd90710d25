"""The template's functions and API, served like ``sam local start-api`` by SAM CLI's own code, without Docker.

SAM CLI reads the template (``SamLocalStackProvider``, ``SamFunctionProvider``, ``ApiProvider``), resolves each
invocation (``LocalLambdaRunner``: code path, layers, environment variables, timeout) and emulates API Gateway
(``LocalApigwService``: routes, event construction, response parsing, binary media types). Only the runtime is
ours: ``WorkerProcessRuntime`` runs the handlers in warm worker processes, up to N per function (the function's
reserved concurrency, else ``workers_per_function``).

What is changed around SAM CLI's code is only what it costs per request, never what it produces: its invoke config
is resolved once per function (``CachedConfigLambdaRunner``), its Flask request reads the environ's headers once
(``SamRequest``), and it records no telemetry event per request (``without_sam_telemetry``).
"""

import io
import json
import logging
import os
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

import flask
import yaml
from samcli.commands.local.cli_common.invoke_context import InvokeContext
from samcli.commands.local.lib.exceptions import NoApisDefined, TenantIdValidationError, UnsupportedInlineCodeError
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
from samcli.lib.intrinsic_resolver.intrinsic_property_resolver import IntrinsicResolver
from samcli.lib.intrinsic_resolver.intrinsics_symbol_table import IntrinsicsSymbolTable
from samcli.lib.providers.api_provider import ApiProvider
from samcli.lib.providers.exceptions import MissingFunctionNameException
from samcli.lib.providers.provider import Cors, Function
from samcli.lib.providers.sam_base_provider import SamBaseProvider
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.lib.utils.stream_writer import StreamWriter
from samcli.local.apigw import local_apigw_service
from samcli.local.apigw.event_constructor import _should_base64_encode, construct_v1_event
from samcli.local.apigw.exceptions import LambdaResponseParseException
from samcli.local.apigw.local_apigw_service import LocalApigwService
from samcli.local.apigw.route import Route
from samcli.local.apigw.service_error_responses import ServiceErrorResponses
from samcli.local.docker.exceptions import DockerContainerCreationFailedException
from samcli.local.lambda_service.local_lambda_http_service import LocalLambdaHttpService
from samcli.local.lambdafn.config import FunctionConfig
from samcli.local.lambdafn.exceptions import FunctionNotFound
from werkzeug.datastructures import EnvironHeaders, MIMEAccept
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_accept_header, parse_options_header
from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer
from werkzeug.utils import cached_property
from werkzeug.wsgi import get_input_stream

from med_classifier.api.request_guard import RequestRefused, check_utf8, proxy_error
from scripts.local_runner.cognito import CLAIMS_KEY, CognitoAuthorizerCheck, UserPool, cognito_routes
from scripts.local_runner.runtime import InvocationResult, UnsupportedFunctionError, WorkerProcessRuntime

LOG = logging.getLogger(__name__)
BODY_KEY = "local_runner.body"  # the request body in the WSGI environ, read once (TextBodyCheck)


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


class CachedConfigLambdaRunner(LocalLambdaRunner):
    """SAM CLI's ``LocalLambdaRunner``, resolving each function's invoke config once instead of at every invocation.

    Its ``get_invoke_config`` builds the environment anew each time (credentials through a new boto3 session when
    none were found before), yet a worker keeps the config it started with, as a warm container keeps its
    environment: the first resolution is the one in effect either way.
    """

    def __init__(self, *args, function_credentials: dict[str, dict[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._configs: dict[tuple[str, str | None], FunctionConfig] = {}
        self._function_credentials = function_credentials or {}

    def get_invoke_config(self, function: Function, override_runtime: str | None = None) -> FunctionConfig:
        key = (function.full_path, override_runtime)
        config = self._configs.get(key)
        if config is None:
            config = self._configs[key] = super().get_invoke_config(function, override_runtime)
            credentials = self._function_credentials.get(function.name)
            if credentials:  # its own role's, as Lambda gives a function (scripts/local_iam.py)
                config.env_vars.aws_creds = {
                    **config.env_vars.aws_creds,
                    "key": credentials["AWS_ACCESS_KEY_ID"],
                    "secret": credentials["AWS_SECRET_ACCESS_KEY"],
                    "sessiontoken": credentials.get("AWS_SESSION_TOKEN", ""),
                }
        return config


NO_VALUE = "<AWS::NoValue>"  # stands for {"Ref": "AWS::NoValue"} while SAM CLI's resolver works


def resolve_property(value: Any, stack) -> Any:
    """A resource property as CloudFormation resolves it: parameter values (overrides, then defaults), conditions
    and ``Fn::If`` applied, None where it is ``AWS::NoValue``.

    SAM CLI's resolver leaves a whole ``Fn::If`` unresolved when a branch is ``AWS::NoValue`` (it resolves that to
    None, then refuses None as an argument), so ``AWS::NoValue`` is swapped for a marker around it.
    """
    parameters = SamBaseProvider._get_parameter_values(stack.template_dict, stack.parameters)
    # A Ref to a Number parameter is a string in CloudFormation, e.g. in !Equals [!Ref Reserved, "-1"].
    parameters = {name: _cfn_string(parameter) for name, parameter in parameters.items()}
    resolver = IntrinsicResolver(
        template=stack.template_dict,
        symbol_resolver=IntrinsicsSymbolTable(template=stack.template_dict, logical_id_translator=parameters),
    )
    resolved = resolver.intrinsic_property_resolver(_marking_no_value(value), ignore_errors=False)
    return None if resolved == NO_VALUE else resolved


def _cfn_string(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _marking_no_value(value: Any) -> Any:
    if value == {"Ref": "AWS::NoValue"}:
        return NO_VALUE
    if isinstance(value, dict):
        return {key: _marking_no_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_marking_no_value(item) for item in value]
    return value


def reserved_concurrency(stacks, functions) -> dict[str, int]:
    """Each function's ``ReservedConcurrentExecutions`` by full path, resolved (``resolve_property``); functions
    without one (absent, ``AWS::NoValue`` or -1) are left out. 0 stops a function on AWS; here it gets one worker."""
    stacks_by_path = {stack.stack_path: stack for stack in stacks}
    reserved = {}
    for function in functions:
        stack = stacks_by_path.get(function.stack_path)
        resource = stack.resources.get(function.function_id) if stack is not None else None
        properties = (resource or {}).get("Properties") or {}
        if "ReservedConcurrentExecutions" not in properties:
            continue
        value = resolve_property(properties["ReservedConcurrentExecutions"], stack)
        try:
            count = int(value) if value is not None else -1
        except (TypeError, ValueError):
            LOG.warning("%s: ReservedConcurrentExecutions %r is not a number; ignored", function.full_path, value)
            continue
        if count == 0:
            LOG.warning("%s: reserved concurrency 0 stops it on AWS; the local runner serves it", function.full_path)
        if count >= 0:
            reserved[function.full_path] = max(count, 1)
    return reserved


class LocalFunctions:
    """The template's Lambda functions, resolved by SAM CLI and run in warm worker processes.

    ``env_vars_path`` is a SAM env-vars file: ``{"Parameters": {...all functions...}, "<LogicalId>": {...}}``
    (or a .env file). ``parameter_overrides`` maps template parameter names to values. A function runs in up to N
    worker processes at once, as many as Lambda instances: N is its reserved concurrency in the template
    (``ReservedConcurrentExecutions``), else ``workers_per_function`` (default: the number of cores).
    ``function_credentials`` maps a function's logical id to the AWS_* credentials its workers get (its own
    role's: scripts/local_iam.py); the others get the runner's, as SAM CLI gives them.
    """

    def __init__(
        self,
        template: str,
        env_vars_path: str | None = None,
        parameter_overrides: dict[str, str] | None = None,
        workers_per_function: int | None = None,
        function_credentials: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.template_path = os.path.abspath(template)
        # sam local resolves CodeUri and layer ContentUri against the template's directory.
        self.base_dir = os.path.dirname(self.template_path)
        with yaml_safe_loader_preserved():
            self.stacks, _ = SamLocalStackProvider.get_stacks(
                self.template_path, parameter_overrides=parameter_overrides
            )
        self.function_provider = SamFunctionProvider(self.stacks)
        self.runtime = WorkerProcessRuntime(
            self.base_dir,
            workers_per_function=workers_per_function,
            reserved_concurrency=reserved_concurrency(self.stacks, self.function_provider.get_all()),
        )
        self.lambda_runner = CachedConfigLambdaRunner(
            local_runtime=self.runtime,
            function_provider=self.function_provider,
            cwd=self.base_dir,
            real_path=self.base_dir,
            env_vars_values=InvokeContext._get_env_vars_value(env_vars_path),
            function_credentials=function_credentials,
        )
        self.log_stream = StreamWriter(sys.stderr, auto_flush=True)

    def start_workers(self) -> None:
        """Starts a worker of every function so that their init runs now rather than on the first request."""
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


class TextBodyCheck:
    """A body that is not UTF-8 under a media type the API does not declare binary: SAM CLI's event
    construction fails decoding it and answers 502; the functions answer such a body (arriving as base64
    or as text) 400 ``invalid_body_encoding`` (request_guard). This answers it so, before SAM CLI.

    It reads every request's body, once, for what comes after it: ``wsgi.input`` and ``BODY_KEY``."""

    def __init__(self, app, binary_media_types: list[str]) -> None:
        self.app, self.binary_media_types = app, binary_media_types

    def __call__(self, environ, start_response):
        body = get_input_stream(environ).read()
        # The stream is consumed: what reads the body next reads this copy (BytesIO shares the bytes) or BODY_KEY
        # (SamRequest). A chunked body stays chunked (wsgi.input_terminated), so CONTENT_LENGTH stays as it was.
        environ.update({"wsgi.input": io.BytesIO(body), BODY_KEY: body})
        # The media type as werkzeug's Request.mimetype reads it, without building a Request.
        mimetype = parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower()
        if _should_base64_encode(self.binary_media_types, mimetype):
            return self.app(environ, start_response)
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


class CachedEnvironHeaders(EnvironHeaders):
    """werkzeug's headers of a WSGI environ, walked once: ``EnvironHeaders`` walks the whole environ for every
    ``getlist()``, which SAM CLI's event construction calls for each header. Same pairs, in the same order, and
    ``getlist()`` answers from a dict of them (``Headers.getlist`` compares names case-insensitively)."""

    def __init__(self, environ) -> None:
        super().__init__(environ)
        self._pairs = list(super().__iter__())
        self._values: dict[str, list[str]] = {}
        for name, value in self._pairs:
            self._values.setdefault(name.lower(), []).append(value)

    def __iter__(self):
        return iter(self._pairs)

    def getlist(self, key, type=None):  # noqa: A002 - werkzeug's parameter name
        if type is not None or not isinstance(key, str):
            return super().getlist(key, type)
        return list(self._values.get(key.lower(), ()))


ACCEPT_CACHE_SIZE = 256  # distinct Accept headers whose parse is kept (a MIMEAccept is immutable)
_parsed_accept_headers: dict[str | None, MIMEAccept] = {}


class SamRequest(flask.Request):
    """The request class of SAM CLI's Flask app: Flask's, with ``CachedEnvironHeaders``, and the body that
    ``TextBodyCheck`` read (``get_data()`` returns it rather than reading the stream again)."""

    def __init__(self, environ, populate_request: bool = True, shallow: bool = False) -> None:
        super().__init__(environ, populate_request, shallow)
        self.headers = CachedEnvironHeaders(environ)
        if (body := environ.get(BODY_KEY)) is not None:
            self._cached_data = body

    @cached_property
    def accept_mimetypes(self) -> MIMEAccept:
        """werkzeug's parse of the Accept header, parsed once per distinct header (SAM CLI reads it for every
        response: ``_should_base64_decode_body``)."""
        header = self.headers.get("Accept")
        accept = _parsed_accept_headers.get(header)
        if accept is None:
            if len(_parsed_accept_headers) >= ACCEPT_CACHE_SIZE:
                _parsed_accept_headers.clear()
            accept = _parsed_accept_headers[header] = parse_accept_header(header, MIMEAccept)
        return accept


def invoke_error_response(error: Exception) -> flask.Response:
    """What ``LocalApigwService._request_handler`` answers when invoking the route's function raises ``error``
    (one of ``INVOKE_ERRORS``, in the order of its except clauses). Needs an app context."""
    if isinstance(error, TenantIdValidationError):
        return ServiceErrorResponses.tenant_id_validation_error(str(error))
    if isinstance(error, FunctionNotFound):
        return ServiceErrorResponses.lambda_not_found_response()
    if isinstance(error, UnsupportedInlineCodeError):
        return ServiceErrorResponses.not_implemented_locally(
            "Inline code is not supported for sam local commands. Please write your code in a separate file."
        )
    if isinstance(error, LambdaResponseParseException):
        return ServiceErrorResponses.lambda_body_failure_response()
    if isinstance(error, DockerContainerCreationFailedException):
        return ServiceErrorResponses.container_creation_failed(error.message)
    return ServiceErrorResponses.lambda_failure_response(
        f"Failed to execute endpoint. Got an invalid function name ({error!s})"
    )


INVOKE_ERRORS = (
    TenantIdValidationError,
    FunctionNotFound,
    UnsupportedInlineCodeError,
    LambdaResponseParseException,
    DockerContainerCreationFailedException,
    MissingFunctionNameException,
)


class RestApiRoutes:
    """SAM CLI's API Gateway emulation of REST API routes, without Flask's request dispatch.

    For a route of a REST API (Lambda proxy, payload 1.0) without a Lambda authorizer, and a method other than
    OPTIONS, this does what ``LocalApigwService._request_handler`` does, with SAM CLI's own parts: its Flask app's
    URL map for routing, ``construct_v1_event`` for the event, ``_invoke_lambda_function`` for the invocation,
    ``_parse_v1_payload_format_lambda_output``, ``ServiceErrorResponses`` and ``service_response`` for the answer.
    What it skips is Flask's dispatch around SAM CLI's handler (request context, the ``request`` proxy, response
    processing), which costs more than all of that. Any other request goes to SAM CLI's Flask app as it is.
    tests/integration/test_local_apigw_equivalence.py runs both on the same requests and compares the events and
    the HTTP responses.
    """

    def __init__(self, service: LocalApigwService) -> None:
        self.service = service
        self.flask_app = service._app
        self.api = service.api
        # Without host or subdomain matching, the URL map's match depends on the method and the path only.
        url_map = self.flask_app.url_map
        self._match_cache_size = 0 if url_map.host_matching or self.flask_app.subdomain_matching else 4096
        self._matches: dict[tuple[str, str, str], tuple] = {}

    def __call__(self, environ, start_response):
        request = SamRequest(environ)
        route = self.route(request)
        if route is None:
            return self.flask_app(environ, start_response)
        try:
            response = self._respond(request, route)
        except Exception:
            # As Flask answers an exception in a view: logged, then the app's 500 handler (SAM CLI's 502).
            LOG.exception("Exception on %s [%s]", request.path, request.method)
            response = self._error_response(ServiceErrorResponses.lambda_failure_response)
        return response(environ, start_response)

    def route(self, request: SamRequest) -> Route | None:
        """The route that serves ``request`` if this serves it (and its rule and view arguments set on it as Flask
        would set them), else None."""
        if request.method == "OPTIONS":
            return None
        try:
            request.url_rule, view_args = self._match(request)
        except HTTPException:
            return None  # 404, 405, redirects: Flask and SAM CLI's error handlers answer them
        request.view_args = dict(view_args)
        route = self.service._dict_of_routes.get(self.service._route_key(request.method, request.url_rule.endpoint))
        if route is None or route.event_type != Route.API or route.authorizer_object is not None:
            return None
        return route if route.payload_format_version in (None, "1.0", "2.0") else None

    def _match(self, request: SamRequest) -> tuple:
        """(rule, view arguments) as Flask's URL adapter matches them; HTTPException if none matches."""
        environ = request.environ
        key = (request.method, environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", ""))
        matched = self._matches.get(key)
        if matched is None:
            matched = self.flask_app.create_url_adapter(request).match(return_rule=True)
            if self._match_cache_size:
                if len(self._matches) >= self._match_cache_size:
                    self._matches.clear()
                self._matches[key] = matched
        return matched

    def _respond(self, request: SamRequest, route: Route) -> flask.Response:
        cors = route.cors if route.cors is not None else self.api.cors
        cors_headers = Cors.cors_to_headers(cors, request.headers.get("Origin"), route.event_type)
        binary_types = self.api.binary_media_types
        try:
            event = construct_v1_event(
                request,
                self.service.port,
                binary_types,
                self.api.stage_name,
                self.api.stage_variables,
                route.operation_name,
                route.event_type,
            )
        except UnicodeDecodeError as error:
            LOG.error("UnicodeDecodeError while processing HTTP request: %s", error)
            return self._error_response(ServiceErrorResponses.lambda_failure_response)
        claims = request.environ.get(CLAIMS_KEY)
        if claims is not None:  # what API Gateway's Cognito authorizer adds (CognitoAuthorizerCheck)
            event["requestContext"]["authorizer"] = {"claims": claims}
        tenant_id = request.headers.get("X-Amz-Tenant-Id")
        try:
            output = self.service._invoke_lambda_function(route.function_name, event, tenant_id)
        except INVOKE_ERRORS as error:
            return self._error_response(invoke_error_response, error)
        try:
            status_code, headers, body = LocalApigwService._parse_v1_payload_format_lambda_output(
                output, binary_types, request, route.event_type
            )
        except LambdaResponseParseException as error:
            LOG.error("Invalid lambda response received: %s", error)
            return self._error_response(ServiceErrorResponses.lambda_failure_response)
        headers.update(cors_headers)
        return self.service.service_response(body, headers, status_code)

    def _error_response(self, respond, *args) -> flask.Response:
        with self.flask_app.app_context():  # SAM CLI's error responses use jsonify
            return respond(*args)


class NoTelemetry:
    """Stands in for SAM CLI's ``EventTracker`` in ``local_apigw_service``, whose request handler records a
    telemetry event per request (and every 50 starts a thread to send them, if telemetry is on)."""

    @staticmethod
    def track_event(*args, **kwargs) -> None:
        return None


def without_sam_telemetry() -> None:
    """No SAM CLI telemetry from ``LocalApigwService`` in this process: the runner is not ``sam`` run by a user."""
    local_apigw_service.EventTracker = NoTelemetry


class PooledWSGIServer(ThreadedWSGIServer):
    """werkzeug's threaded server (what ``sam local start-api`` serves with), its request threads reused.

    werkzeug starts a thread per connection, and so per request, since it answers every one with ``Connection:
    close``; starting it costs more than the rest of serving a small request. Here a thread that has served a
    connection waits for the next one (up to ``IDLE_SECONDS``). As with werkzeug, every connection gets a thread at
    once, so concurrency is unchanged, and the same request handler writes the same bytes.
    """

    IDLE_SECONDS = 60.0

    def __init__(self, host: str, port: int, app) -> None:
        super().__init__(host, port, app)
        self._connections: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a connection and not yet promised one
        self._thread_count = 0

    @property
    def idle_threads(self) -> int:
        """Threads waiting for a connection."""
        with self._lock:
            return self._idle

    def process_request(self, request, client_address) -> None:
        with self._lock:
            start_thread = self._idle == 0
            if start_thread:
                self._thread_count += 1
            else:
                self._idle -= 1  # an idle thread will take this connection
        self._connections.put((request, client_address))
        if start_thread:
            threading.Thread(target=self._serve_connections, name="local-api-request", daemon=True).start()

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            threads, self._thread_count = self._thread_count, 0
        for _ in range(threads):
            self._connections.put(None)  # each thread ends after the connection it may be serving

    def _serve_connections(self) -> None:
        while True:
            try:
                connection = self._connections.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no connection was promised to this thread: it may retire
                        self._idle -= 1
                        self._thread_count -= 1
                        return
                continue
            if connection is None:
                return
            self.process_request_thread(*connection)
            with self._lock:
                self._idle += 1


class LocalApi:
    """``sam local start-api`` in-process: ``start()`` serves in a background thread, ``stop()`` ends everything.

    Usable as a context manager. ``warm`` starts a worker of every function at ``start()``. ``user_pool`` is the
    Cognito user pool whose ID tokens the routes behind the template's Cognito authorizer accept
    (``scripts.local_runner.cognito``); without one they answer 401. ``workers_per_function`` and
    ``function_credentials``: see ``LocalFunctions``. With ``lambda_port`` it also serves Lambda's Invoke API
    there (``sam local start-lambda``'s service, over the same workers), which the PreTraffic hook calls.
    """

    def __init__(
        self,
        template: str,
        env_vars_path: str | None = None,
        host: str = "127.0.0.1",
        port: int = 3000,
        parameter_overrides: dict[str, str] | None = None,
        warm: bool = True,
        user_pool: UserPool | None = None,
        workers_per_function: int | None = None,
        function_credentials: dict[str, dict[str, str]] | None = None,
        lambda_port: int | None = None,
    ) -> None:
        self.functions = LocalFunctions(
            template, env_vars_path, parameter_overrides, workers_per_function, function_credentials
        )
        self.lambda_port = lambda_port
        self._lambda_server: BaseWSGIServer | None = None
        self.user_pool = user_pool
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

    @property
    def lambda_url(self) -> str | None:
        return f"http://{self.host}:{self.lambda_port}" if self.lambda_port else None

    def route_lines(self) -> list[str]:
        """The routes as ``sam local start-api`` announces them."""
        return [
            f"Mounting {route.function_name} at {self.url}{route.path} [{', '.join(route.methods)}]"
            for route in self.routes
        ]

    def start(self) -> None:
        if not self.api.routes:
            raise NoApisDefined("No APIs available in template")
        app = self.wsgi_app(self.functions.lambda_runner, self.functions.log_stream)
        # LocalApigwService.run() blocks and installs signal handlers (main thread only); serving its Flask app
        # with werkzeug's server directly is what that run() does, minus those, and can be shut down.
        self._server = PooledWSGIServer(self.host, self.port, app)
        self._serve_thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)
        self._serve_thread.start()
        if self.lambda_port:
            service = LocalLambdaHttpService(
                self.functions.lambda_runner, self.lambda_port, self.host, stderr=self.functions.log_stream
            )
            service.create()
            self._lambda_server = PooledWSGIServer(self.host, self.lambda_port, service._app)
            threading.Thread(target=self._lambda_server.serve_forever, name="local-lambda", daemon=True).start()
        if self.warm:
            self.functions.start_workers()

    def wsgi_app(self, lambda_runner: LocalLambdaRunner, stderr: StreamWriter | None = None):
        """What ``start()`` serves: SAM CLI's ``LocalApigwService`` over ``lambda_runner``, its REST API routes
        through ``RestApiRoutes``, behind ``TextBodyCheck`` and ``CognitoAuthorizerCheck``."""
        service = LocalApigwService(
            api=self.api, lambda_runner=lambda_runner, port=self.port, host=self.host, stderr=stderr
        )
        service.create()
        service._app.request_class = SamRequest
        without_sam_telemetry()
        app = TextBodyCheck(RestApiRoutes(service), self.api.binary_media_types)
        routes = [route for stack in self.functions.stacks for route in cognito_routes(stack.resources)]
        return CognitoAuthorizerCheck(app, routes, self.user_pool)

    def stop(self) -> None:
        """Stops serving, frees the port and ends the worker processes."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._serve_thread.join()
            self._server = None
        if self._lambda_server is not None:
            self._lambda_server.shutdown()
            self._lambda_server.server_close()
            self._lambda_server = None
        self.functions.stop()

    def invoke_function(self, logical_id: str, event: Any) -> Any:
        """See ``LocalFunctions.invoke_function``."""
        return self.functions.invoke_function(logical_id, event)

    def __enter__(self) -> "LocalApi":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
