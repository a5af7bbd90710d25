"""Docker-free ``sam local start-api``: SAM CLI's template providers and API Gateway emulation, with Python
handlers run in warm worker processes instead of containers. See ``python -m scripts.local_runner --help``.

Also the parts ``sam local`` lacks: SQS event source mappings and EventBridge rules (``event_sources``), and the
SageMaker/Batch training jobs recorded in moto run as local processes (``training_jobs``)."""

from scripts.local_runner.api import FunctionError, LocalApi, LocalFunctions
from scripts.local_runner.event_sources import (
    EventRule,
    SqsEventSource,
    SqsSubscription,
    deliver_event,
    event_rules,
    messages_to_retry,
    pattern_matches,
    sqs_event_sources,
    sqs_subscriptions,
)
from scripts.local_runner.runtime import InvocationResult, UnsupportedFunctionError, WorkerProcessRuntime
from scripts.local_runner.training_jobs import JobRecord, LocalTrainingJobs

__all__ = [
    "EventRule",
    "FunctionError",
    "InvocationResult",
    "JobRecord",
    "LocalApi",
    "LocalFunctions",
    "LocalTrainingJobs",
    "SqsEventSource",
    "SqsSubscription",
    "UnsupportedFunctionError",
    "WorkerProcessRuntime",
    "deliver_event",
    "event_rules",
    "messages_to_retry",
    "pattern_matches",
    "sqs_event_sources",
    "sqs_subscriptions",
]
