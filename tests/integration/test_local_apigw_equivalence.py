"""The local runner serves the same events and HTTP responses as SAM CLI's API Gateway emulation.

``sam local start-api`` serves ``LocalApigwService._app`` (SAM CLI's Flask app) with werkzeug's threaded server. The
runner serves ``LocalApi.wsgi_app``: REST API routes through ``RestApiRoutes`` (SAM CLI's event construction and
response parsing without Flask's dispatch), request headers and body read once (``SamRequest``, ``TextBodyCheck``),
on werkzeug's server with reused threads (``PooledWSGIServer``). Here both serve the same template over HTTP, each
on its own server; every request is sent to both (same Host header), a recording runtime answers both with the Lambda
output the request names (``X-Canned``) and keeps the event each one built. The events must be the same text and the
responses the same status, headers (but Date) and body.
"""

import base64
import http.client
import json
import threading
from dataclasses import dataclass, field

import pytest
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
from samcli.local.apigw.local_apigw_service import LocalApigwService
from werkzeug.serving import make_server

from scripts.local_runner import LocalApi
from scripts.local_runner.api import PooledWSGIServer, RestApiRoutes
from tests.helpers.runner_projects import function_project

pytestmark = pytest.mark.slow

REST_API = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    CodeUri: fn/
    Handler: app.handler
Resources:
  RestApi:
    Type: AWS::Serverless::Api
    Properties:
      StageName: test
      BinaryMediaTypes: [image~1png, application~1octet-stream]
  SwaggerApi:  # SAM CLI reads CORS, stage variables and operation names from an API with a definition
    Type: AWS::Serverless::Api
    Properties:
      StageName: test
      Variables: {stageVariable: from-template}
      Cors:
        AllowOrigin: "'https://example.org'"
        AllowHeaders: "'Content-Type,X-Canned'"
        AllowMethods: "'GET,POST,OPTIONS'"
      DefinitionBody:
        swagger: "2.0"
        info: {title: swagger, version: "1"}
        paths:
          /swagger/{id}:
            get:
              operationId: GetSwaggerThing
              x-amazon-apigateway-integration:
                type: aws_proxy
                httpMethod: POST
                uri: !Sub LAMBDA_URI
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Items: {Type: Api, Properties: {RestApiId: !Ref RestApi, Path: "/items/{item_id}", Method: ANY}}
        Files: {Type: Api, Properties: {RestApiId: !Ref RestApi, Path: "/files/{proxy+}", Method: GET}}
        Root: {Type: Api, Properties: {RestApiId: !Ref RestApi, Path: /, Method: GET}}
        Upload: {Type: Api, Properties: {RestApiId: !Ref RestApi, Path: /upload, Method: POST}}
""".replace(
    "LAMBDA_URI", "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${EchoFunction.Arn}/invocations"
)
# An HTTP API beside a REST API (SAM CLI then keeps no CORS or stage variables: the HTTP API's replace them).
HTTP_API = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      CodeUri: fn/
      Handler: app.handler
      Events:
        Rest: {Type: Api, Properties: {Path: "/items/{item_id}", Method: GET}}
        Http: {Type: HttpApi, Properties: {Path: "/http/{name}", Method: GET}}
        HttpPost: {Type: HttpApi, Properties: {Path: "/http/{name}", Method: POST, PayloadFormatVersion: "1.0"}}
"""
TEMPLATES = {"rest": REST_API, "http": HTTP_API}
HANDLER = "def handler(event, context):\n    raise AssertionError('the recording runtime answers instead')\n"
HOST = "127.0.0.1:3000"  # the Host header of every request: the events carry it
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")
JSON_OK = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps({"a": "é"})}

# What the function answers, by the name in the request's X-Canned header (default "json").
CANNED = {
    "json": json.dumps(JSON_OK),
    "no_content_type": json.dumps({"statusCode": 201, "body": "created"}),
    "multi_value_headers": json.dumps(
        {
            "statusCode": 200,
            "headers": {"X-One": "1", "Set-Cookie": "a=1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Two": ["x", "y"]},
            "body": "m",
        }
    ),
    "png_base64": json.dumps(
        {
            "statusCode": 200,
            "headers": {"Content-Type": "image/png"},
            "body": base64.b64encode(PNG).decode(),
            "isBase64Encoded": True,
        }
    ),
    "base64_flag_as_text": json.dumps(
        {"statusCode": 200, "headers": {"Content-Type": "image/png"}, "body": "aGk=", "isBase64Encoded": "true"}
    ),
    "unicode_body": json.dumps({"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "é ü 中"}),
    "status_only": json.dumps({"statusCode": 404}),
    "no_content": json.dumps({"statusCode": 204, "body": None}),
    "bad_status": json.dumps({"statusCode": "abc", "body": "x"}),
    "unknown_key": json.dumps({"statusCode": 200, "body": "x", "extra": 1}),
    "not_a_dict": json.dumps([1, 2]),
    "not_json": "hello",
    "handler_error": json.dumps({"errorMessage": "boom", "errorType": "RuntimeError", "stackTrace": []}),
    "runtime_raises": None,  # the runtime raises instead of answering
}


class RecordingRuntime:
    """SAM CLI's ``local_runtime``: keeps each event and answers with the output the request's X-Canned names."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def invoke(self, function_config, event, *args, stdout=None, **kwargs):
        self.events.append((function_config.name, event))
        headers = json.loads(event).get("headers") or {}
        output = CANNED[headers.get("X-Canned", "json")]
        if output is None:
            raise RuntimeError("the runtime failed")
        stdout.write_str(output)


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    headers: tuple = ()
    body: bytes | None = None
    chunked: bool = False
    fast: bool = True  # served by RestApiRoutes rather than SAM CLI's Flask app
    template: str = "rest"

    def with_canned(self, name: str) -> "Case":
        return Case(f"{self.id}-{name}", self.method, self.path, (*self.headers, ("X-Canned", name)), self.body)


JSON_TYPE = ("Content-Type", "application/json")
CASES = [
    Case("get-path-and-query", "GET", "/items/7?color=red&color=blue&size=&flag"),
    Case("get-encoded-path-and-query", "GET", "/items/a%20b%C3%A9?q=%C3%A9t%C3%A9&plus=a+b&amp=%26"),
    Case("encoded-slash-matches-no-route", "GET", "/items/a%2Fb", fast=False),
    Case("get-trailing-slash", "GET", "/items/7/"),
    Case("get-root", "GET", "/"),
    Case("get-greedy-path", "GET", "/files/a/b/c.txt"),
    Case("post-json", "POST", "/items/9", (JSON_TYPE,), json.dumps({"x": [1.5, 2], "é": "ü"}).encode()),
    Case("post-empty-body", "POST", "/items/9", (JSON_TYPE,), b""),
    Case("post-without-content-type", "POST", "/upload", (), b"plain words"),
    Case("post-png-is-base64", "POST", "/items/9", (("Content-Type", "image/png"),), PNG),
    Case("post-octet-stream", "POST", "/upload", (("Content-Type", "application/octet-stream"),), b"\x00\xff\x10"),
    Case("post-chunked", "POST", "/upload", (JSON_TYPE,), b'{"chunked": true}', chunked=True),
    Case("put-any-method", "PUT", "/items/3", (JSON_TYPE,), b"{}"),
    Case("delete-any-method", "DELETE", "/items/3"),
    Case("repeated-header", "GET", "/items/1", (("X-Dup", "a"), ("X-Dup", "b"), ("Accept", "text/html"))),
    Case("cookies-and-origin", "GET", "/items/1", (("Cookie", "a=1; b=2"), ("Origin", "https://example.org"))),
    Case("operation-name-cors-stage-variables", "GET", "/swagger/1", (("Origin", "https://example.org"),)),
    Case("user-agent-and-forwarded", "GET", "/items/1", (("User-Agent", "tests"), ("X-Forwarded-For", "10.0.0.1"))),
    Case("accept-png-decodes", "GET", "/items/1", (("Accept", "image/png"), ("X-Canned", "png_base64"))),
    Case("accept-json-keeps-base64", "GET", "/items/1", (("Accept", "application/json"), ("X-Canned", "png_base64"))),
    Case("tenant-id-refused", "GET", "/items/1", (("X-Amz-Tenant-Id", "t1"),)),
    Case("options-preflight", "OPTIONS", "/items/1", (("Origin", "https://example.org"),), fast=False),
    Case("options-without-route", "OPTIONS", "/swagger/1", fast=False),
    Case("head-on-any-route", "HEAD", "/items/1"),
    Case("head-on-get-route", "HEAD", "/files/a", fast=False),
    Case("rest-beside-http-api", "GET", "/items/1?a=1", template="http"),
    Case("http-api-payload-2", "GET", "/http/x?a=1&a=2", template="http", fast=False),
    Case("http-api-payload-1", "POST", "/http/x", (JSON_TYPE,), b"{}", template="http", fast=False),
    Case("unknown-path", "GET", "/nowhere", fast=False),
    Case("method-not-allowed", "DELETE", "/upload", fast=False),
    Case("double-slash-in-greedy-path", "GET", "/files//a"),
    Case("double-slash", "GET", "/items//7", fast=False),
    *(Case("canned", "GET", "/items/5").with_canned(name) for name in CANNED),
]


@dataclass
class Served:
    status: int
    headers: list
    body: bytes
    events: list = field(default_factory=list)


def send(port: int, case: Case) -> tuple[int, list, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(case.method, case.path, skip_host=True, skip_accept_encoding=True)
        headers = [("Host", HOST), *case.headers]
        if case.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        elif case.body is not None:
            headers.append(("Content-Length", str(len(case.body))))
        for name, value in headers:
            connection.putheader(name, value)
        if case.chunked:
            connection.endheaders(iter([case.body[:5], case.body[5:]]), encode_chunked=True)
        else:
            connection.endheaders(case.body)
        response = connection.getresponse()
        body = response.read()
        return response.status, [(k, v) for k, v in response.getheaders() if k.lower() != "date"], body
    finally:
        connection.close()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """Sends a case to SAM CLI's app and to the runner's; returns both answers with the events they built."""
    servings = {}
    try:
        for name, template in TEMPLATES.items():
            servings[name] = serving(function_project(tmp_path_factory.mktemp(name), template, HANDLER))
        yield lambda which, case: servings[case.template][0](which, case)
    finally:
        for _, stop in servings.values():
            stop()


def serving(project):
    local_api = LocalApi(str(project / "template.yaml"), port=3000, warm=False)
    runtime = RecordingRuntime()
    runner = LocalLambdaRunner(runtime, local_api.functions.function_provider, str(project), str(project))
    sam = LocalApigwService(local_api.api, runner, port=local_api.port, host=local_api.host)
    sam.create()
    servers = {
        "sam": make_server("127.0.0.1", 0, sam._app, threaded=True),  # as Flask's app.run() in sam local
        "runner": PooledWSGIServer("127.0.0.1", 0, local_api.wsgi_app(runner)),
    }
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    lock = threading.Lock()

    def serve(which: str, case: Case) -> Served:
        with lock:
            runtime.events.clear()
            served = Served(*send(servers[which].server_port, case))
            served.events = list(runtime.events)
        return served

    def stop() -> None:
        for server in servers.values():
            server.shutdown()
            server.server_close()
        local_api.functions.stop()

    return serve, stop


@pytest.fixture
def fast_path_calls(monkeypatch):
    """How many requests RestApiRoutes answered itself (rather than handing them to SAM CLI's Flask app)."""
    calls = []
    respond = RestApiRoutes._respond

    def counting(self, request, route):
        calls.append(request.path)
        return respond(self, request, route)

    monkeypatch.setattr(RestApiRoutes, "_respond", counting)
    return calls


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_same_event_and_response_as_sam_cli(both, fast_path_calls, case):
    sam = both("sam", case)
    ours = both("runner", case)

    assert ours == sam
    assert len(fast_path_calls) == (1 if case.fast else 0)


def test_the_cases_reach_the_function_and_its_answers(both):
    """The comparison above is not between two failures: most cases invoke the function and get its answer."""
    invoked = [case for case in CASES if both("sam", case).events]
    assert len(invoked) >= len(CASES) - 8
    served = both("runner", CASES[0])
    assert served.status == 200 and json.loads(served.body) == {"a": "é"}
    event = json.loads(served.events[0][1])
    assert event["multiValueQueryStringParameters"] == {"color": ["red", "blue"], "size": [""], "flag": [""]}
    assert (event["requestContext"]["domainName"], event["pathParameters"]) == (HOST, {"item_id": "7"})
    swagger = both("runner", next(case for case in CASES if case.path.startswith("/swagger/")))
    assert ("Access-Control-Allow-Origin", "https://example.org") in swagger.headers
    event = json.loads(swagger.events[0][1])
    assert (event["requestContext"]["operationName"], event["stageVariables"]) == (
        "GetSwaggerThing",
        {"stageVariable": "from-template"},
    )
    chunked = json.loads(both("runner", next(case for case in CASES if case.chunked)).events[0][1])
    assert chunked["body"] == '{"chunked": true}'
    png = json.loads(both("runner", next(case for case in CASES if case.id == "post-png-is-base64")).events[0][1])
    assert (png["isBase64Encoded"], base64.b64decode(png["body"])) == (True, PNG)
