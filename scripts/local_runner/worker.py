"""One warm Lambda execution environment for a Python function, run as a child process of the local runner.

Started by ``runtime.FunctionWorker`` as ``python -P worker.py --handler H [--path DIR ...] REQUEST_FD RESPONSE_FD``
with the function's environment and its code directory as working directory. It imports the handler once (the
init phase), then answers invocations. Each message is a JSON header line, followed, for the two that carry a
payload, by that many bytes of JSON text as they are (UTF-8), so that an event or a result is encoded and decoded
once, not once more as a string inside the message:

    request:   {"request_id": str, "deadline_ms": int, "invoked_function_arn": str, "event_bytes": int} + the event
    responses: {"ready": true}                          once, after a successful init
               {"init_error": {...}}                    instead of "ready"; the process then exits, like Lambda's
               {"result_bytes": int} + the result | {"error": {...}}   one per request

Results and errors are shaped like those of Lambda's Python runtime (awslambdaric). The protocol has pipes of its
own, so whatever the handler prints (stdout is the runner's stderr) cannot corrupt it. Standard library only: the
function's sys.path is in effect here, not the runner's packages.
"""

import argparse
import decimal
import importlib
import json
import logging
import os
import site
import sys
import time
import traceback

_current_request_id = ""  # stamped on log records, like awslambdaric's _GLOBAL_AWS_REQUEST_ID


class InitError(Exception):
    """The handler could not be loaded; carries the Lambda error payload."""

    def __init__(self, error_type, message, stack_trace=None):
        super().__init__(message)
        self.payload = error_payload(message, error_type, stack_trace)


class LambdaContext:
    """The context object Lambda's Python runtime passes to handlers (same attributes, same types)."""

    def __init__(self, request_id, deadline_ms, invoked_function_arn):
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a string, as on Lambda
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.client_context = None
        self.identity = CognitoIdentity()
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))


class CognitoIdentity:
    cognito_identity_id = None
    cognito_identity_pool_id = None


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id
        return True


def error_payload(message, error_type, stack_trace=None, request_id=""):
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack_trace or []}


def exception_payload(error, request_id=""):
    frames = traceback.extract_tb(error.__traceback__)
    # Hide this module's frames, as awslambdaric hides its bootstrap.py frames.
    while frames and frames[0].filename == __file__:
        frames.pop(0)
    return error_payload(str(error), type(error).__name__, traceback.format_list(frames), request_id)


def log_error(payload):
    # awslambdaric joins these lines with "\r" for CloudWatch; "\n" keeps a terminal readable.
    lines = [f"[ERROR] {payload['errorType']}: {payload['errorMessage']}"]
    if payload["stackTrace"]:
        lines += ["Traceback (most recent call last):", *(line.rstrip("\n") for line in payload["stackTrace"])]
    print("\n".join(lines), file=sys.stderr, flush=True)


def setup_logging():
    """Root logger as Lambda's Python runtime configures it (text format, UTC timestamps, request id)."""
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.terminator = ""
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S"
        )
    )
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)


def load_handler(handler_setting):
    try:
        module_name, function_name = handler_setting.rsplit(".", 1)
    except ValueError as error:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{handler_setting}': {error}") from None
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        raise InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}") from None
    except SyntaxError as error:
        trace = [f'  File "{error.filename}" Line {error.lineno}\n    {error.text}']
        message = f"Syntax error in module '{module_name}': {error}"
        raise InitError("Runtime.UserCodeSyntaxError", message, trace) from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        raise InitError("Runtime.HandlerNotFound", message) from None


def encode_decimal(value):
    # Lambda's marshaller writes Decimals as JSON numbers (DynamoDB returns them).
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def invoke(handler, request, event):
    """The handler's result as JSON text, or the error payload (a dict) if the invocation failed."""
    request_id = request["request_id"]
    context = LambdaContext(request_id, request["deadline_ms"], request["invoked_function_arn"])
    try:
        result = handler(json.loads(event), context)
    except Exception as error:  # noqa: BLE001 - any handler failure becomes the invocation's error
        payload = exception_payload(error, request_id)
    else:
        try:
            return json.dumps(result, default=encode_decimal, ensure_ascii=False)
        except (TypeError, ValueError) as error:
            payload = error_payload(f"Unable to marshal response: {error}", "Runtime.MarshalError", None, request_id)
    log_error(payload)
    return payload


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handler", required=True, help="the function's Handler setting, module.function")
    parser.add_argument("--path", action="append", default=[], help="directory for sys.path, in order")
    parser.add_argument("request_fd", type=int)
    parser.add_argument("response_fd", type=int)
    return parser.parse_args()


def main():
    global _current_request_id
    args = parse_args()
    requests = os.fdopen(args.request_fd, "rb")
    responses = os.fdopen(args.response_fd, "wb")

    def send(message, payload=b""):
        sys.stdout.flush()
        sys.stderr.flush()
        responses.write(json.dumps(message).encode() + b"\n" + payload)
        responses.flush()

    sys.path[:0] = args.path
    for directory in args.path:
        site.addsitedir(directory)  # honours .pth files, as Lambda's runtime does for /var/task and /opt/python
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    setup_logging()

    try:
        handler = load_handler(args.handler)
    except InitError as error:
        init_error = error.payload
    except Exception as error:  # noqa: BLE001 - code run at import may raise anything
        init_error = exception_payload(error)
    else:
        init_error = None
    if init_error:
        log_error(init_error)
        send({"init_error": init_error})
        return 1
    send({"ready": True})

    for line in requests:  # ends when the runner closes the pipe (or dies)
        request = json.loads(line)
        event = requests.read(request["event_bytes"])
        _current_request_id = request["request_id"]
        answer = invoke(handler, request, event)
        if isinstance(answer, str):
            result = answer.encode("utf-8", "surrogatepass")
            send({"result_bytes": len(result)}, result)
        else:
            send({"error": answer})
    return 0


if __name__ == "__main__":
    sys.exit(main())
