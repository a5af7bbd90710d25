"""Docker-free ``sam local start-api``: SAM CLI's template providers and API Gateway emulation, with Python
handlers run in warm worker processes instead of containers. See ``python -m scripts.local_runner --help``."""

from scripts.local_runner.api import FunctionError, LocalApi, LocalFunctions
from scripts.local_runner.runtime import InvocationResult, UnsupportedFunctionError, WorkerProcessRuntime

__all__ = [
    "FunctionError",
    "InvocationResult",
    "LocalApi",
    "LocalFunctions",
    "UnsupportedFunctionError",
    "WorkerProcessRuntime",
]
