"""A Docker-free stand-in for SAM CLI's LambdaRuntime: Python handlers run in warm worker processes.

SAM CLI's ``LocalLambdaRunner`` resolves the function (code path, layers, environment variables, timeout) and hands
a ``FunctionConfig`` to its ``local_runtime.invoke``. ``WorkerProcessRuntime.invoke`` takes the same arguments as
``samcli.local.lambdafn.runtime.LambdaRuntime.invoke`` and writes to the ``stdout`` stream exactly what SAM's
container runtime writes there, so ``LocalApigwService`` turns it into the same HTTP response as ``sam local``.
"""

import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
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


class FunctionWorker:
    """One warm execution environment: a worker process for one function, restarted after a timeout or crash.

    Invocations are serialized (one at a time, like one Lambda execution environment).
    """

    def __init__(self, function_config: FunctionConfig, base_dir: str) -> None:
        self._config = function_config
        self._base_dir = base_dir
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._requests = None  # write end of the request pipe
        self._function_arn = ""
        self._messages: queue.Queue[dict | None] = queue.Queue()
        self._ready = False
        self._stopped = False

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
                    message = self._next_message(timeout)
                    if message is None or "init_error" in message:
                        return self._init_failed(message, request_id, stderr)
                    self._ready = True
                request = {
                    "request_id": request_id,
                    "event": event,
                    "deadline_ms": int(time.time() * 1000) + timeout * 1000,
                    "invoked_function_arn": self._function_arn,
                }
                self._requests.write(json.dumps(request).encode() + b"\n")
                message = self._next_message(timeout)
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
        self._requests = os.fdopen(request_write, "wb", buffering=0)
        self._messages = queue.Queue()
        self._ready = False
        threading.Thread(
            target=_read_messages,
            args=(os.fdopen(response_read, "rb"), self._messages),
            name=f"worker-{self._config.name}-{self._process.pid}",
            daemon=True,
        ).start()

    def _next_message(self, timeout: float) -> dict | None:
        """The worker's next message, None if it exited; TimeoutError after ``timeout`` seconds."""
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None

    def _init_failed(self, message: dict | None, request_id: str, stderr: StreamWriter | None) -> InvocationResult:
        if message is None:
            return self._exited(request_id, stderr)
        self._discard(grace_seconds=STOP_GRACE_SECONDS)  # the worker exits after reporting, as Lambda's runtime does
        return InvocationResult(_to_json(message["init_error"]), message["init_error"]["errorType"])

    def _timed_out(self, request_id: str, timeout: int, stderr: StreamWriter | None) -> InvocationResult:
        self._discard()
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _log_line(stderr, f"{now} {request_id} Task timed out after {timeout}.00 seconds")
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
        _log_line(stderr, f"{error['errorMessage']}\n{error['errorType']}")
        return InvocationResult(_to_json(error), error["errorType"])

    def _discard(self, grace_seconds: float = 0.0) -> None:
        """Ends the current process (if any) and forgets it; the next invocation starts a new one."""
        if self._requests is not None:
            self._requests.close()  # a worker exits by itself when its request pipe closes
            self._requests = None
        if self._process is not None:
            try:
                self._process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                pass
            _kill_process_group(self._process)
            self._process = None
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


class WorkerProcessRuntime:
    """``local_runtime`` for SAM CLI's ``LocalLambdaRunner`` that runs each function in a warm worker process.

    ``base_dir`` is the directory layer ContentUris are relative to (the template's, as for ``sam local``).
    """

    def __init__(self, base_dir: str) -> None:
        self._base_dir = base_dir
        self._workers: dict[str, FunctionWorker] = {}
        self._workers_lock = threading.Lock()
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
        worker = self._worker(function_config)
        request_id = str(uuid.uuid4())
        _log_line(stderr, f"START RequestId: {request_id} Version: $LATEST")
        started = time.monotonic()
        result = worker.invoke(event, request_id, stderr)
        duration_ms = (time.monotonic() - started) * 1000
        _log_line(stderr, f"END RequestId: {request_id}")
        _log_line(
            stderr,
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {function_config.memory} MB",
        )
        return result

    def start_worker(self, function_config: FunctionConfig) -> None:
        """Starts the function's worker ahead of its first invocation (a warm start)."""
        self._worker(function_config).start()

    def stop(self) -> None:
        """Stops every worker; the runtime cannot be used afterwards."""
        with self._workers_lock:
            self._stopped = True
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop()

    def _worker(self, function_config: FunctionConfig) -> FunctionWorker:
        _check_supported(function_config)
        with self._workers_lock:
            if self._stopped:
                raise RuntimeError("The local runtime has been stopped")
            worker = self._workers.get(function_config.full_path)
            if worker is None:
                worker = FunctionWorker(function_config, self._base_dir)
                self._workers[function_config.full_path] = worker
            return worker


def _check_supported(function_config: FunctionConfig) -> None:
    if function_config.packagetype != ZIP or not str(function_config.runtime).startswith("python"):
        raise UnsupportedFunctionError(
            f"{function_config.name}: only Python zip functions run without Docker "
            f"(runtime {function_config.runtime}, package type {function_config.packagetype})"
        )
    if function_config.durable_config:
        raise UnsupportedFunctionError(f"{function_config.name}: durable functions are not supported")


def _read_messages(responses, messages: "queue.Queue[dict | None]") -> None:
    """Feeds the worker's JSON lines into ``messages``; None marks the end (the worker exited)."""
    with responses:
        for line in responses:
            messages.put(json.loads(line))
    messages.put(None)


def _kill_process_group(process: subprocess.Popen) -> None:
    """SIGKILLs the worker and anything it spawned (its own session), then reaps it so no zombie is left."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _log_line(stderr: StreamWriter | None, line: str) -> None:
    if stderr is not None:
        stderr.write_str(line + "\n")
        stderr.flush()


def _to_json(payload: dict) -> str:
    # As SAM's container runtime re-serializes what the emulator answers.
    return json.dumps(payload, ensure_ascii=False)
