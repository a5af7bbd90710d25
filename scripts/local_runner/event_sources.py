"""The event sources ``sam local`` lacks: Lambda's SQS event source mapping, EventBridge rule delivery and
EventBridge schedules.

All are read from the template as SAM CLI resolves it (``LocalFunctions.stacks``): a function's ``SQS`` events
become ``SqsEventSource`` pollers, its ``EventBridgeRule`` (or ``CloudWatchEvent``) events become ``EventRule``
targets for ``deliver_event``, its ``Schedule`` events become ``ScheduleSource`` timers. Only the root stack is read.
"""

import base64
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from scripts.local_runner.api import LocalFunctions

LOG = logging.getLogger(__name__)

SQS_RECEIVE_LIMIT = 10  # messages per ReceiveMessage call


class SqsSubscription(NamedTuple):
    """One ``Type: SQS`` event of a function, with Lambda's defaults for what the template leaves out."""

    function_id: str
    queue_id: str  # the queue's logical id for ``!GetAtt Queue.Arn``, else the ARN as written
    batch_size: int = 10
    window_seconds: float = 0
    report_batch_item_failures: bool = False


class EventRule(NamedTuple):
    function_id: str
    pattern: dict[str, Any]


class Schedule(NamedTuple):
    function_id: str
    name: str  # the event's name in the template
    expression: str  # rate(...) as written


RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int:
    """``rate(10 minutes)`` → 600. Cron expressions are not emulated (ValueError)."""
    match = RATE.match(expression.strip())
    if not match:
        raise ValueError(f"only rate(...) schedules are emulated locally, not {expression!r}")
    return int(match.group(1)) * RATE_UNITS[match.group(2).rstrip("s")]


def schedules(stacks: Sequence[Any]) -> list[Schedule]:
    """The enabled ``Schedule`` events of the template's functions."""
    return [
        Schedule(function_id, name, properties["Schedule"])
        for function_id, name, properties in _function_events(stacks[0].resources, ("Schedule",))
        if properties.get("Enabled", True) is not False and properties.get("State", "ENABLED") == "ENABLED"
    ]


class BackgroundLoop:
    """An event source's daemon thread: ``start()`` runs ``_run`` until ``stop()``, which waits for the pass in
    progress to finish."""

    thread_name = "event-source"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError


class ScheduleSource(BackgroundLoop):
    """Invokes a function with EventBridge's "Scheduled Event" every ``interval_seconds`` (the template's rate
    unless overridden), the first time one interval after ``start()``. A failed invocation is logged only."""

    def __init__(self, functions: LocalFunctions, schedule: Schedule, interval_seconds: float | None = None) -> None:
        super().__init__()
        self.functions, self.schedule = functions, schedule
        self.interval_seconds = interval_seconds or rate_seconds(schedule.expression)
        self.thread_name = f"schedule-{schedule.name}"
        self.invocations = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.functions.invoke_function(self.schedule.function_id, self.event())
            except Exception as error:  # EventBridge retries and then drops; the runner carries on
                LOG.error("Scheduled %s of %s failed: %s", self.schedule.name, self.schedule.function_id, error)
            self.invocations += 1

    def event(self) -> dict[str, Any]:
        rule = f"{self.schedule.function_id}{self.schedule.name}"
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{rule}"],
            "detail": {},
        }


def sqs_subscriptions(stacks: Sequence[Any]) -> list[SqsSubscription]:
    """The SQS event sources of the template's functions (``stacks`` as in ``LocalFunctions.stacks``)."""
    stack = stacks[0]
    subscriptions = []
    for function_id, event, properties in _function_events(stack.resources, ("SQS",)):
        if properties.get("Enabled", True) is False:
            continue
        # Parameters are resolved in ``resources``; SAM's resolver turns every GetAtt into a Lambda ARN, so the
        # queue reference is read from the unresolved template.
        raw_queue = stack.raw_resources[function_id]["Properties"]["Events"][event]["Properties"]["Queue"]
        subscriptions.append(
            SqsSubscription(
                function_id,
                _get_att_logical_id(raw_queue) or properties["Queue"],
                int(properties.get("BatchSize", 10)),
                float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
            )
        )
    return subscriptions


def sqs_event_sources(
    functions: LocalFunctions, queue_urls: dict[str, str], sqs, wait_seconds: int = 1
) -> list["SqsEventSource"]:
    """One (not yet started) ``SqsEventSource`` per SQS event in the template.

    ``queue_urls`` maps each subscription's ``queue_id`` to the queue's URL (the caller created the queues).
    """
    sources = []
    for subscription in sqs_subscriptions(functions.stacks):
        if subscription.queue_id not in queue_urls:
            raise ValueError(f"{subscription.function_id} polls {subscription.queue_id}, which has no queue URL")
        sources.append(SqsEventSource(functions, subscription, queue_urls[subscription.queue_id], sqs, wait_seconds))
    return sources


def event_rules(stacks: Sequence[Any]) -> list[EventRule]:
    """The enabled EventBridge rules that target the template's functions."""
    return [
        EventRule(function_id, properties["Pattern"])
        for function_id, _, properties in _function_events(stacks[0].resources, ("EventBridgeRule", "CloudWatchEvent"))
        if properties.get("State", "ENABLED") == "ENABLED" and properties.get("Enabled", True) is not False
    ]


def pattern_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge matching for exact-value patterns: each field's value (or any element of a list value) must be
    one of the listed values; nested objects match recursively. Content filters (prefix, numeric…) never match."""
    for key, expected in pattern.items():
        value = event.get(key)
        if isinstance(expected, dict):
            if not isinstance(value, dict) or not pattern_matches(expected, value):
                return False
        elif not any(candidate in expected for candidate in (value if isinstance(value, list) else [value])):
            return False
    return True


def deliver_event(functions: LocalFunctions, rules: Iterable[EventRule], event: dict[str, Any]) -> None:
    """Invokes every rule target whose pattern matches, as EventBridge does. A failed delivery is logged only."""
    for rule in rules:
        if not pattern_matches(rule.pattern, event):
            continue
        try:
            functions.invoke_function(rule.function_id, event)
        except Exception as error:  # EventBridge retries and then drops; the runner carries on
            LOG.error("Delivering %s to %s failed: %s", event["detail-type"], rule.function_id, error)


def messages_to_retry(result: Any, message_ids: Sequence[str]) -> set[str]:
    """The messages a ``ReportBatchItemFailures`` response leaves in the queue, by Lambda's rules.

    No response, or no/empty ``batchItemFailures``, is a success; a malformed response or an ``itemIdentifier``
    that is not a message of the batch fails the whole batch.
    """
    if result is None:
        return set()
    if not isinstance(result, dict):
        return set(message_ids)
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(message_ids)
    identifiers = [item.get("itemIdentifier") if isinstance(item, dict) else None for item in failures]
    if all(isinstance(identifier, str) and identifier in message_ids for identifier in identifiers):
        return set(identifiers)
    return set(message_ids)


class SqsEventSource(BackgroundLoop):
    """Lambda's SQS event source mapping for one function and queue, polling in a background thread.

    Like Lambda: a batch is up to ``batch_size`` messages collected for at most ``window_seconds`` after the first
    one; a failed invocation deletes nothing (the messages reappear after the visibility timeout and the queue's
    redrive policy moves them to its dead-letter queue); with ``report_batch_item_failures`` only the reported
    messages stay. ``wait_seconds`` (whole seconds, as SQS long polls) bounds each poll, hence how long ``stop()``
    takes.
    """

    def __init__(
        self,
        functions: LocalFunctions,
        subscription: SqsSubscription,
        queue_url: str,
        sqs,
        wait_seconds: int = 1,
    ) -> None:
        self.subscription = subscription
        self.queue_url = queue_url
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self.queue_arn = attributes["QueueArn"]
        self.wait_seconds = wait_seconds
        self._functions = functions
        self._sqs = sqs
        super().__init__()
        self.thread_name = f"sqs-{subscription.function_id}"
        self.batches = 0  # invocations
        self.messages_deleted = 0
        self.messages_retried = 0  # left in the queue by a failed invocation or a reported item failure
        self.failed_batches = 0  # batches of which nothing was deleted

    def _run(self) -> None:  # a batch being delivered when stop() is called is finished first
        while not self._stop.is_set():
            try:
                messages = self._collect_batch()
                if messages and not self._stop.is_set():
                    self._deliver(messages)
            except Exception:  # e.g. moto going away at shutdown: keep polling rather than die silently
                LOG.exception("Polling %s for %s failed", self.queue_url, self.subscription.function_id)
                self._stop.wait(self.wait_seconds)

    def _collect_batch(self) -> list[dict]:
        batch_size = self.subscription.batch_size
        messages = self._receive(self.wait_seconds, batch_size)
        if not messages:
            return []
        deadline = time.monotonic() + self.subscription.window_seconds
        while len(messages) < batch_size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # SQS long polls in whole seconds; below one second, short polls a little apart.
            wait_seconds = int(min(remaining, self.wait_seconds))
            more = self._receive(wait_seconds, batch_size - len(messages))
            if not more and not wait_seconds:
                time.sleep(min(remaining, 0.1))
            messages += more
        return messages

    def _receive(self, wait_seconds: int, limit: int) -> list[dict]:
        return self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(limit, SQS_RECEIVE_LIMIT),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    def _deliver(self, messages: list[dict]) -> None:
        subscription = self.subscription
        message_ids = [message["MessageId"] for message in messages]
        self.batches += 1
        try:
            result = self._functions.invoke_function(subscription.function_id, self._event(messages))
        except Exception as error:
            retry, outcome = set(message_ids), f"invocation failed ({getattr(error, 'error_type', error)})"
        else:
            retry = messages_to_retry(result, message_ids) if subscription.report_batch_item_failures else set()
            outcome = f"{len(retry)} item failures" if retry else "ok"
        if retry == set(message_ids):
            self.failed_batches += 1
        deleted = self._delete([message for message in messages if message["MessageId"] not in retry])
        self.messages_deleted += deleted
        self.messages_retried += len(retry)
        print(
            f"[sqs {subscription.function_id}] batch of {len(messages)} from {self.queue_arn.rsplit(':', 1)[-1]}: "
            f"{outcome}, {deleted} deleted, {len(retry)} left for redelivery",
            file=sys.stderr,
            flush=True,
        )

    def _event(self, messages: list[dict]) -> dict:
        region = self.queue_arn.split(":")[3]
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": {
                        name: _lambda_message_attribute(value)
                        for name, value in message.get("MessageAttributes", {}).items()
                    },
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": region,
                }
                for message in messages
            ]
        }

    def _delete(self, messages: list[dict]) -> int:
        deleted = 0
        for start in range(0, len(messages), SQS_RECEIVE_LIMIT):
            chunk = messages[start : start + SQS_RECEIVE_LIMIT]
            response = self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(chunk)],
            )
            deleted += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                LOG.warning("Deleting a message from %s failed: %s", self.queue_url, failure.get("Message"))
        return deleted


def _function_events(resources: dict[str, Any], event_types: Sequence[str]):
    """(function logical id, event name, event properties) for the functions' events of the given types."""
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for name, event in (resource.get("Properties", {}).get("Events") or {}).items():
            if event.get("Type") in event_types:
                yield logical_id, name, event.get("Properties", {})


def _get_att_logical_id(reference: Any) -> str | None:
    """``Queue`` for ``{"Fn::GetAtt": ["Queue", "Arn"]}`` or ``{"Fn::GetAtt": "Queue.Arn"}``."""
    if isinstance(reference, dict) and "Fn::GetAtt" in reference:
        target = reference["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else str(target).split(".")[0]
    return None


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A ReceiveMessage message attribute in the shape of Lambda's SQS event (camelCase, binary as base64)."""
    attribute = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return attribute
