"""A Docker-free stand-in for SAM CLI's LambdaRuntime: Python handlers run in warm worker processes.

SAM CLI's ``LocalLambdaRunner`` resolves the function (code path, layers, environment variables, timeout) and hands
a ``FunctionConfig`` to its ``local_runtime.invoke``. ``WorkerProcessRuntime.invoke`` takes the same arguments as
``samcli.local.lambdafn.runtime.LambdaRuntime.invoke`` and writes to the ``stdout`` stream exactly what SAM's
container runtime writes there, so ``LocalApigwService`` turns it into the same HTTP response as ``sam local``.

Each function has a ``FunctionPool`` of up to N worker processes, started on demand as Lambda scales instances: a new
one only when every existing one is busy; beyond N an invocation waits for a free one.
"""

import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from samcli.lib.utils.codeuri import resolve_code_path
from samcli.lib.utils.invocation_type import EVENT, REQUEST_RESPONSE
from samcli.lib.utils.packagetype import ZIP
from samcli.lib.utils.stream_writer import StreamWriter
from samcli.local.lambdafn.config import FunctionConfig
from samcli.local.lambdafn.exceptions import UnsupportedInvocationType

LOG = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
# Host variables a process needs to run at all; everything else comes from SAM's resolved function environment.
HOST_VARIABLES = ("PATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "TMPDIR")
# After closing a worker's request pipe, how long it may take to exit by itself before it is killed.
STOP_GRACE_SECONDS = 2.0
HANDLER_OUTPUT_FD = 2  # handler stdout and stderr go to the runner's stderr, as sam local prints container output
PIPE_CHUNK = 1 << 16  # a Linux pipe holds 64 KiB: one read takes at most that much


class UnsupportedFunctionError(Exception):
    """The function cannot run in a worker process (not a Python zip function)."""


@dataclass(frozen=True)
class InvocationResult:
    """What the function's container would have answered.

    ``payload`` is the text SAM's container runtime writes to stdout; ``error_type`` is set when the invocation
    failed (the handler raised, init failed, it timed out or the process died).
    """

    payload: str
    error_type: str | None = None


class MessageReader:
    """The worker's messages (worker.py describes them), read from its response pipe in the invoking thread.

    ``next_message`` waits at most until a deadline (``time.monotonic()``): TimeoutError after it, None once the
    worker has exited (end of file)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def next_message(self, deadline: float) -> dict | None:
        end = self._buffer.find(b"\n")
        while end < 0:
            if not self._fill(deadline):
                return None
            end = self._buffer.find(b"\n")
        message = json.loads(self._buffer[:end])
        del self._buffer[: end + 1]
        if "result_bytes" in message:
            size = message.pop("result_bytes")
            while len(self._buffer) < size:
                if not self._fill(deadline):
                    return None
            message["result"] = self._buffer[:size].decode("utf-8", "surrogatepass")
            del self._buffer[:size]
        return message

    def close(self) -> None:
        os.close(self._fd)

    def _fill(self, deadline: float) -> bool:
        """Appends what the pipe holds to the buffer; False at end of file."""
        remaining_ms = math.ceil((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0 or not self._poll.poll(remaining_ms):
            raise TimeoutError
        chunk = os.read(self._fd, PIPE_CHUNK)
        self._buffer += chunk
        return bool(chunk)


class FunctionWorker:
    """One warm execution environment: a worker process for one function, restarted after a timeout or crash.

    Invocations are serialized (one at a time, like one Lambda execution environment).
    """

    def __init__(self, function_config: FunctionConfig, base_dir: str) -> None:
        self._config = function_config
        self._base_dir = base_dir
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._requests_fd: int | None = None  # write end of the request pipe
        self._responses: MessageReader | None = None
        self._function_arn = ""
        self._ready = False
        self._stopped = False

    @property
    def pid(self) -> int | None:
        """The current process's id (None before the first start or after a discard)."""
        process = self._process
        return process.pid if process is not None else None

    def start(self) -> None:
        """Starts the process now so that its init runs before the first request."""
        with self._lock:
            self._ensure_started()

    def invoke(self, event: str, request_id: str, stderr: StreamWriter | None) -> InvocationResult:
        with self._lock:
            self._ensure_started()
            timeout = self._config.timeout
            try:
                if not self._ready:
                    message = self._responses.next_message(time.monotonic() + timeout)
                    if message is None or "init_error" in message:
                        return self._init_failed(message, request_id, stderr)
                    self._ready = True
                self._send(event, request_id, timeout)
                message = self._responses.next_message(time.monotonic() + timeout)
            except TimeoutError:
                return self._timed_out(request_id, timeout, stderr)
            except BrokenPipeError:
                message = None  # the worker is gone
            if message is None:
                return self._exited(request_id, stderr)
            if "error" in message:
                return InvocationResult(_to_json(message["error"]), message["error"]["errorType"])
            return InvocationResult(message["result"])

    def stop(self) -> None:
        """Ends the worker process and whatever it started; it will not be restarted."""
        self._stopped = True
        if self._lock.acquire(blocking=False):
            try:
                self._discard(grace_seconds=STOP_GRACE_SECONDS)
            finally:
                self._lock.release()
        elif (process := self._process) is not None:
            # An invocation is in flight: killing the process ends it at once, and it cleans up after itself.
            _kill_process_group(process)

    def _send(self, event: str, request_id: str, timeout: int) -> None:
        """One request: a JSON header line, then the event's bytes as they are (no second JSON encoding)."""
        payload = event.encode("utf-8", "surrogatepass")
        header = {
            "request_id": request_id,
            "deadline_ms": int(time.time() * 1000) + timeout * 1000,
            "invoked_function_arn": self._function_arn,
            "event_bytes": len(payload),
        }
        _write_all(self._requests_fd, json.dumps(header).encode() + b"\n" + payload)

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        if self._process is not None:
            LOG.info("Worker for %s exited (code %s); starting a new one", self._config.name, self._process.returncode)
            self._discard()
        if self._stopped:
            raise RuntimeError(f"The worker for {self._config.name} has been stopped")
        environment = self._environment()
        self._function_arn = (
            f"arn:aws:lambda:{environment['AWS_REGION']}:{environment['AWS_ACCOUNT_ID']}:function:{self._config.name}"
        )
        command = [sys.executable, "-P", str(WORKER_SCRIPT), "--handler", self._config.handler]
        for directory in self._python_path():
            command += ["--path", directory]
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        command += [str(request_read), str(response_write)]
        try:
            self._process = subprocess.Popen(
                command,
                cwd=self._code_dir(),
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=HANDLER_OUTPUT_FD,
                pass_fds=(request_read, response_write),
                start_new_session=True,  # Ctrl+C in the terminal is the runner's to handle, not the worker's
            )
        except BaseException:
            os.close(request_write)
            os.close(response_read)
            raise
        finally:
            os.close(request_read)
            os.close(response_write)
        LOG.debug("Started worker %s for %s", self._process.pid, self._config.name)
        self._requests_fd = request_write
        self._responses = MessageReader(response_read)
        self._ready = False
        if self._stopped:  # stop() came while this process was starting: it found the previous one, or none
            self._discard()
            raise RuntimeError(f"The worker for {self._config.name} has been stopped")

    def _init_failed(self, message: dict | None, request_id: str, stderr: StreamWriter | None) -> InvocationResult:
        if message is None:
            return self._exited(request_id, stderr)
        self._discard(grace_seconds=STOP_GRACE_SECONDS)  # the worker exits after reporting, as Lambda's runtime does
        return InvocationResult(_to_json(message["init_error"]), message["init_error"]["errorType"])

    def _timed_out(self, request_id: str, timeout: int, stderr: StreamWriter | None) -> InvocationResult:
        self._discard()
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _log_lines(stderr, f"{now} {request_id} Task timed out after {timeout}.00 seconds")
        # The text the Lambda runtime interface emulator answers with; API Gateway emulation turns it into a 502.
        return InvocationResult(f"Task timed out after {timeout}.00 seconds", "Sandbox.Timedout")

    def _exited(self, request_id: str, stderr: StreamWriter | None) -> InvocationResult:
        process = self._process
        self._discard(grace_seconds=STOP_GRACE_SECONDS)
        code = process.returncode
        status = f"exit status {code}" if code >= 0 else f"signal: {signal.strsignal(-code).lower()}"
        error = {
            "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {status}",
            "errorType": "Runtime.ExitError",
        }
        _log_lines(stderr, f"{error['errorMessage']}\n{error['errorType']}")
        return InvocationResult(_to_json(error), error["errorType"])

    def _discard(self, grace_seconds: float = 0.0) -> None:
        """Ends the current process (if any) and forgets it; the next invocation starts a new one."""
        if self._requests_fd is not None:
            os.close(self._requests_fd)  # a worker exits by itself when its request pipe closes
            self._requests_fd = None
        if self._process is not None:
            try:
                self._process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                pass
            _kill_process_group(self._process)
            self._process = None
        if self._responses is not None:
            self._responses.close()
            self._responses = None
        self._ready = False

    def _code_dir(self) -> str:
        code_dir = self._config.code_abs_path
        if not code_dir or not os.path.isdir(code_dir):
            raise UnsupportedFunctionError(
                f"{self._config.name}: CodeUri {code_dir!r} is not a directory; the local runner serves source code"
            )
        return code_dir

    def _python_path(self) -> list[str]:
        """The function's code directory, then the python/ directory of each local layer that has one."""
        layer_dirs = []
        for layer in self._config.layers:
            if not layer.is_defined_within_template:
                LOG.warning(
                    "%s: layer %s is not in the template and cannot be fetched; skipped", self._config.name, layer.arn
                )
                continue
            python_dir = os.path.join(resolve_code_path(self._base_dir, layer.codeuri), "python")
            if os.path.isdir(python_dir):
                layer_dirs.append(python_dir)
            else:
                # e.g. a BuildMethod: makefile layer: its packages come from the runner's own environment.
                LOG.debug("%s: layer %s has no python/ directory in source", self._config.name, layer.name)
        # Lambda extracts layers into /opt in order, later ones overwriting earlier ones: the last layer wins.
        return [self._code_dir(), *reversed(layer_dirs)]

    def _environment(self) -> dict[str, str]:
        environment = {name: os.environ[name] for name in HOST_VARIABLES if name in os.environ}
        environment.update(
            {
                # Set by the Lambda runtime image rather than by SAM CLI.
                "LAMBDA_TASK_ROOT": self._code_dir(),
                "_HANDLER": self._config.handler,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{self._config.runtime}",
                "TZ": ":UTC",
            }
        )
        # AWS_* function settings, credentials and region, then template variables with env-vars file overrides.
        environment.update(self._config.env_vars.resolve())
        return environment


class FunctionPool:
    """Up to ``max_workers`` warm workers of one function, started on demand as Lambda scales instances.

    An invocation takes an idle worker (the one used last, as Lambda reuses warm instances); a new worker starts only
    when every existing one is busy and fewer than ``max_workers`` exist; beyond that the invocation waits for one.
    """

    def __init__(self, function_config: FunctionConfig, base_dir: str, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError(f"{function_config.name}: max_workers must be at least 1, not {max_workers}")
        self.max_workers = max_workers
        self._config = function_config
        self._base_dir = base_dir
        self._condition = threading.Condition()
        self._workers: list[FunctionWorker] = []
        self._idle: list[FunctionWorker] = []
        self._waiting = 0
        self._stopped = False

    @property
    def workers(self) -> list[FunctionWorker]:
        """Every worker created so far, busy or idle."""
        with self._condition:
            return list(self._workers)

    @property
    def waiting(self) -> int:
        """How many invocations wait for a worker (all ``max_workers`` are busy)."""
        with self._condition:
            return self._waiting

    @contextmanager
    def worker(self) -> Iterator[FunctionWorker]:
        """A worker for one invocation, returned to the pool afterwards. RuntimeError once the pool is stopped."""
        worker = self._acquire()
        try:
            yield worker
        finally:
            with self._condition:
                self._idle.append(worker)
                self._condition.notify()

    def start_one(self) -> None:
        """Starts a worker now (if none exists yet) so that its init runs before the first request."""
        with self.worker() as worker:
            worker.start()

    def stop(self) -> None:
        """Stops every worker, in-flight invocations included; waiting invocations get RuntimeError."""
        with self._condition:
            self._stopped = True
            workers = list(self._workers)
            self._condition.notify_all()
        _stop_all(workers)

    def _acquire(self) -> FunctionWorker:
        with self._condition:
            while True:
                if self._stopped:
                    raise RuntimeError(f"The workers of {self._config.name} have been stopped")
                if self._idle:
                    return self._idle.pop()
                if len(self._workers) < self.max_workers:
                    worker = FunctionWorker(self._config, self._base_dir)
                    self._workers.append(worker)
                    return worker
                self._waiting += 1
                try:
                    self._condition.wait()
                finally:
                    self._waiting -= 1


class WorkerProcessRuntime:
    """``local_runtime`` for SAM CLI's ``LocalLambdaRunner`` that runs each function in warm worker processes.

    ``base_dir`` is the directory layer ContentUris are relative to (the template's, as for ``sam local``). A function
    gets up to ``reserved_concurrency[full_path]`` workers if given, else ``workers_per_function`` (default: the
    number of cores).
    """

    def __init__(
        self,
        base_dir: str,
        workers_per_function: int | None = None,
        reserved_concurrency: Mapping[str, int] | None = None,
    ) -> None:
        if workers_per_function is not None and workers_per_function < 1:
            raise ValueError(f"workers_per_function must be at least 1, not {workers_per_function}")
        self._base_dir = base_dir
        self.workers_per_function = workers_per_function or os.cpu_count() or 1
        self._reserved_concurrency = dict(reserved_concurrency or {})
        self._pools: dict[str, FunctionPool] = {}
        self._pools_lock = threading.Lock()
        self._stopped = False

    def invoke(
        self,
        function_config: FunctionConfig,
        event: str,
        tenant_id: str | None = None,
        invocation_type: str = REQUEST_RESPONSE,
        durable_execution_name: str | None = None,
        debug_context=None,
        stdout: StreamWriter | None = None,
        stderr: StreamWriter | None = None,
        container_host: str | None = None,
        container_host_interface: str | None = None,
        extra_hosts: dict | None = None,
        container_dns=None,
    ) -> dict[str, str] | None:
        """Same signature as ``LambdaRuntime.invoke``; the container and debugging options do not apply here.

        Writes the function's response (or error) to ``stdout`` as SAM's container runtime does. Returns None:
        response headers exist only for durable functions, which are not supported.
        """
        if invocation_type not in (EVENT, REQUEST_RESPONSE):
            raise UnsupportedInvocationType(
                f"invocation-type: {invocation_type} is not supported. Only Event and RequestResponse are supported."
            )
        result = self.run(function_config, event, stderr)
        if stdout is not None:
            stdout.write_str(result.payload)
            stdout.flush()
        return None

    def run(self, function_config: FunctionConfig, event: str, stderr: StreamWriter | None = None) -> InvocationResult:
        """Invokes the function with ``event`` (JSON text); Lambda's START/END/REPORT lines go to ``stderr``."""
        with self.pool(function_config).worker() as worker:
            request_id = str(uuid.uuid4())
            _log_lines(stderr, f"START RequestId: {request_id} Version: $LATEST")
            started = time.monotonic()
            result = worker.invoke(event, request_id, stderr)
            duration_ms = (time.monotonic() - started) * 1000
        _log_lines(
            stderr,
            f"END RequestId: {request_id}",
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {function_config.memory} MB",
        )
        return result

    def start_worker(self, function_config: FunctionConfig) -> None:
        """Starts one worker of the function ahead of its first invocation (a warm start)."""
        self.pool(function_config).start_one()

    @property
    def pools(self) -> dict[str, FunctionPool]:
        """The pools created so far, by function full path (a function's is created at its first use)."""
        with self._pools_lock:
            return dict(self._pools)

    def max_workers(self, function_config: FunctionConfig) -> int:
        """How many workers the function may have at once."""
        return self._reserved_concurrency.get(function_config.full_path) or self.workers_per_function

    def pool(self, function_config: FunctionConfig) -> FunctionPool:
        """The function's pool of workers, created at its first use."""
        _check_supported(function_config)
        with self._pools_lock:
            if self._stopped:
                raise RuntimeError("The local runtime has been stopped")
            pool = self._pools.get(function_config.full_path)
            if pool is None:
                pool = FunctionPool(function_config, self._base_dir, self.max_workers(function_config))
                self._pools[function_config.full_path] = pool
            return pool

    def stop(self) -> None:
        """Stops every worker of every function, in-flight ones included; the runtime cannot be used afterwards."""
        with self._pools_lock:
            self._stopped = True
            pools = list(self._pools.values())
        threads = [threading.Thread(target=pool.stop, name="stop-workers") for pool in pools]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _check_supported(function_config: FunctionConfig) -> None:
    if function_config.packagetype != ZIP or not str(function_config.runtime).startswith("python"):
        raise UnsupportedFunctionError(
            f"{function_config.name}: only Python zip functions run without Docker "
            f"(runtime {function_config.runtime}, package type {function_config.packagetype})"
        )
    if function_config.durable_config:
        raise UnsupportedFunctionError(f"{function_config.name}: durable functions are not supported")


def _stop_all(workers: list[FunctionWorker]) -> None:
    """Stops the workers side by side: each may wait up to STOP_GRACE_SECONDS for its process to exit."""
    threads = [threading.Thread(target=worker.stop, name="stop-worker") for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _kill_process_group(process: subprocess.Popen) -> None:
    """SIGKILLs the worker and anything it spawned (its own session), then reaps it so no zombie is left."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _log_lines(stderr: StreamWriter | None, *lines: str) -> None:
    """Writes the lines at once (one write and one flush)."""
    if stderr is not None:
        stderr.write_str("\n".join(lines) + "\n")
        stderr.flush()


def _to_json(payload: dict) -> str:
    # As SAM's container runtime re-serializes what the emulator answers.
    return json.dumps(payload, ensure_ascii=False)
