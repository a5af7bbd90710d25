"""Up to N warm workers per function in the local runner, started on demand as Lambda scales instances.

N is the function's ReservedConcurrentExecutions (resolved with the parameter overrides), else
``workers_per_function`` (``--workers-per-function``), else the number of cores. The handler (written to tmp_path)
holds an invocation at a ``Gate``: it connects to the test's TCP socket, says its pid and blocks until the test
releases it, so the test knows which workers are busy without sleeping.
"""

import json
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from scripts.local_runner import FunctionError, LocalApi, LocalFunctions
from scripts.local_runner import __main__ as cli
from scripts.local_runner.api import reserved_concurrency
from tests.helpers.polling import wait_for
from tests.helpers.runner_projects import function_project, process_exists

pytestmark = pytest.mark.slow

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Reserved:
    Type: Number
    Default: -1
Conditions:
  Reserve: !Not [!Equals [!Ref Reserved, "-1"]]
Globals:
  Function:
    Runtime: python3.12
    CodeUri: fn/
    Handler: app.handler
    Timeout: 30
Resources:
  GateFunction:
    Type: AWS::Serverless::Function
    Properties:
      ReservedConcurrentExecutions: !If [Reserve, !Ref Reserved, !Ref AWS::NoValue]
      Events:
        Gate: {Type: Api, Properties: {Path: "/gate/{port}", Method: GET}}
  FixedFunction:
    Type: AWS::Serverless::Function
    Properties:
      ReservedConcurrentExecutions: 3
  StoppedFunction:
    Type: AWS::Serverless::Function
    Properties:
      ReservedConcurrentExecutions: 0
  PlainFunction:
    Type: AWS::Serverless::Function
"""
HANDLER = """\
import json
import os
import socket


def handler(event, context):
    port = event.get("gate") or (event.get("pathParameters") or {}).get("port")
    if port:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=60) as gate:
            gate.sendall(f"{os.getpid()}\\n".encode())
            gate.recv(1)  # until the test releases this invocation
    if event.get("crash"):
        os._exit(3)
    if "pathParameters" in event:
        return {"statusCode": 200, "body": json.dumps({"pid": os.getpid()})}
    return {"pid": os.getpid()}
"""
PROJECT_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
DEADLINE_SECONDS = 60  # for a worker to start (its init) and reach the gate; a failure, not a timing


class Gate:
    """A TCP socket invocations connect to and block on: ``arrivals`` tells the pids of those held."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._held: list[tuple[int, socket.socket]] = []

    def arrivals(self, count: int) -> list[int]:
        """The pids of the first ``count`` invocations held now (released ones leave), waiting for them."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(self._held) < count:
            self._server.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                raise AssertionError(f"only {len(self._held)} of {count} invocations reached the gate") from None
            connection.settimeout(DEADLINE_SECONDS)
            pid = int(connection.makefile().readline())
            self._held.append((pid, connection))
        return [pid for pid, _ in self._held[:count]]

    def release_one(self) -> int:
        pid, connection = self._held.pop(0)
        connection.sendall(b"x")
        connection.close()
        return pid

    def release_all(self) -> None:
        while self._held:
            self.release_one()

    def close(self) -> None:
        self.release_all()
        self._server.close()


@pytest.fixture
def gate():
    gate = Gate()
    yield gate
    gate.close()


@pytest.fixture
def project(tmp_path):
    return function_project(tmp_path, TEMPLATE, HANDLER)


@contextmanager
def running(project, **kwargs):
    functions = LocalFunctions(str(project / "template.yaml"), **kwargs)
    with ThreadPoolExecutor(max_workers=8) as invocations:
        try:
            yield functions, invocations
        finally:
            functions.stop()


def invoke(functions: LocalFunctions, invocations: ThreadPoolExecutor, event: dict, name="GateFunction") -> Future:
    return invocations.submit(functions.invoke_function, name, event)


def pool_of(functions: LocalFunctions, name: str = "GateFunction"):
    runner = functions.lambda_runner
    return functions.runtime.pool(runner.get_invoke_config(runner.get_function(name)))


def test_busy_workers_make_the_function_scale_out_up_to_n(project, gate):
    with running(project, workers_per_function=3) as (functions, invocations):
        first = invoke(functions, invocations, {})
        assert first.result(DEADLINE_SECONDS)["pid"]  # one worker, reused while it is free
        assert len(pool_of(functions).workers) == 1
        held = [invoke(functions, invocations, {"gate": gate.port}) for _ in range(3)]

        pids = gate.arrivals(3)

        assert len(set(pids)) == 3, "three invocations at once run in three workers"
        assert first.result()["pid"] in pids, "the warm worker serves one of them"
        gate.release_all()
        assert sorted(future.result(DEADLINE_SECONDS)["pid"] for future in held) == sorted(pids)
        assert len(pool_of(functions).workers) == 3


def test_beyond_n_an_invocation_waits_for_a_free_worker(project, gate):
    with running(project, workers_per_function=2) as (functions, invocations):
        held = [invoke(functions, invocations, {"gate": gate.port}) for _ in range(3)]
        pids = gate.arrivals(2)
        pool = pool_of(functions)
        wait_for(lambda: pool.waiting == 1, DEADLINE_SECONDS, "the third invocation to wait", interval=0.05)
        assert len(pool.workers) == 2
        assert not any(future.done() for future in held)

        released = gate.release_one()
        third = gate.arrivals(2)[-1]

        assert third == released, "the third invocation runs in the worker that became free"
        assert len(pool.workers) == 2
        gate.release_all()
        assert sorted(future.result(DEADLINE_SECONDS)["pid"] for future in held) == sorted([*pids, third])


def test_reserved_concurrency_in_the_template_sets_n(project):
    with running(project, parameter_overrides={"Reserved": "2"}, workers_per_function=1) as (functions, _):
        assert pool_of(functions).max_workers == 2, "GateFunction: !Ref Reserved"
        assert pool_of(functions, "FixedFunction").max_workers == 3
        assert pool_of(functions, "PlainFunction").max_workers == 1, "no reservation: the flag"
        assert pool_of(functions, "StoppedFunction").max_workers == 1, "0 stops it on AWS; one worker here"
    with running(project, workers_per_function=4) as (functions, _):
        assert pool_of(functions).max_workers == 4, "Reserved -1 (the default): AWS::NoValue, so the flag"
    with running(project) as (functions, _):
        assert pool_of(functions, "PlainFunction").max_workers == os.cpu_count()


def test_reserved_concurrency_of_the_project_template():
    functions = LocalFunctions(str(PROJECT_TEMPLATE), parameter_overrides={"PredictReservedConcurrency": "7"})
    try:
        reserved = reserved_concurrency(functions.stacks, functions.function_provider.get_all())
    finally:
        functions.stop()
    assert reserved["PredictFunction"] == 7
    unreserved = LocalFunctions(str(PROJECT_TEMPLATE), parameter_overrides={"PredictReservedConcurrency": "-1"})
    try:
        assert "PredictFunction" not in reserved_concurrency(unreserved.stacks, unreserved.function_provider.get_all())
    finally:
        unreserved.stop()


def test_workers_per_function_flag(monkeypatch):
    args = cli.build_parser().parse_args(["start-api", "--workers-per-function", "3"])
    assert args.workers_per_function == 3
    assert cli.build_parser().parse_args(["start-api"]).workers_per_function is None
    for wrong in ("0", "-2", "two"):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["start-api", "--workers-per-function", wrong])

    created = {}

    class Started(Exception):
        pass

    class RecordingApi:
        def __init__(self, *args, **kwargs):
            created.update(kwargs)

        def start(self):
            raise Started

    monkeypatch.setattr(cli, "LocalApi", RecordingApi)
    with pytest.raises(Started):
        cli.start_api(args)
    assert created["workers_per_function"] == 3


def test_stop_ends_busy_workers_and_waiting_invocations(project, gate):
    with running(project, workers_per_function=1) as (functions, invocations):
        busy = invoke(functions, invocations, {"gate": gate.port})
        (pid,) = gate.arrivals(1)
        waiting = invoke(functions, invocations, {"gate": gate.port})
        wait_for(lambda: pool_of(functions).waiting == 1, DEADLINE_SECONDS, "the second invocation to wait", 0.05)

        functions.stop()

        with pytest.raises(FunctionError) as killed:
            busy.result(DEADLINE_SECONDS)
        assert killed.value.error_type == "Runtime.ExitError"
        with pytest.raises(RuntimeError, match="stopped"):
            waiting.result(DEADLINE_SECONDS)
        assert not process_exists(pid)


def test_a_crashed_worker_is_replaced_and_n_still_holds(project, gate):
    with running(project, workers_per_function=2) as (functions, invocations):
        held = [invoke(functions, invocations, {"gate": gate.port}) for _ in range(2)]
        before = set(gate.arrivals(2))
        gate.release_all()
        [future.result(DEADLINE_SECONDS) for future in held]

        with pytest.raises(FunctionError) as crashed:
            functions.invoke_function("GateFunction", {"crash": True})
        assert crashed.value.error_type == "Runtime.ExitError"

        held = [invoke(functions, invocations, {"gate": gate.port}) for _ in range(2)]
        after = set(gate.arrivals(2))
        gate.release_all()
        [future.result(DEADLINE_SECONDS) for future in held]
        assert len(before & after) == 1, "one worker crashed and was replaced, the other kept serving"
        (gone,) = before - after
        assert not process_exists(gone)
        assert len(pool_of(functions).workers) == 2


def test_the_api_starts_one_warm_worker_then_scales_out_over_http(project, gate):
    api = LocalApi(str(project / "template.yaml"), port=free_port(), workers_per_function=2)
    api.start()
    try:
        pools = api.functions.runtime.pools
        assert len(pools) == 4, "every function is started warm"
        assert all(len(pool.workers) == 1 and pool.workers[0].pid is not None for pool in pools.values())
        with ThreadPoolExecutor(max_workers=2) as clients:
            responses = [clients.submit(requests.get, f"{api.url}/gate/{gate.port}", timeout=60) for _ in range(2)]
            pids = gate.arrivals(2)
            gate.release_all()
            answered = [json.loads(response.result().text)["pid"] for response in responses]
        assert len(set(pids)) == 2 and sorted(answered) == sorted(pids)
    finally:
        api.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_pooled_server_reuses_threads_and_serves_connections_at_once():
    from scripts.local_runner.api import PooledWSGIServer

    together = threading.Barrier(3, timeout=DEADLINE_SECONDS)  # three requests in flight at once, or none

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/together":
            together.wait()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(threading.get_ident()).encode()]

    server = PooledWSGIServer("127.0.0.1", 0, app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        threads = set()
        for _ in range(5):
            threads.add(requests.get(f"{url}/one", timeout=10).text)
            # Once done with a connection (werkzeug waits for the client to close it), the thread waits for the next.
            wait_for(lambda: server.idle_threads == 1, DEADLINE_SECONDS, "the thread to be idle", interval=0.01)
        assert len(threads) == 1, "one connection after the other: one thread serves them all"
        with ThreadPoolExecutor(max_workers=3) as clients:
            answers = [clients.submit(requests.get, f"{url}/together", timeout=60) for _ in range(3)]
            assert all(answer.result().status_code == 200 for answer in answers)
    finally:
        server.shutdown()
        server.server_close()
    wait_for(
        lambda: not [t for t in threading.enumerate() if t.name == "local-api-request"],
        DEADLINE_SECONDS,
        "the idle request threads to end",
        interval=0.05,
    )
