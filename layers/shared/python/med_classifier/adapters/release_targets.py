"""The PreTraffic hook's adapters: a new function version called as API Gateway would call it
(GoldenPredictor), and CodeDeploy told how the hook ended (DeploymentReporter)."""

from __future__ import annotations

import json
from collections.abc import Callable

from ..domain.manifest import GoldenExample
from ..domain.release_check import ReleaseCallFailed
from .aws_clients import ServiceAdapter


class LambdaPredictor(ServiceAdapter):
    """GoldenPredictor over Lambda's Invoke API: `target` is a function version (name or ARN with its
    version), invoked directly, so no alias and no client traffic are involved; `event_for` makes the
    event API Gateway would send (med_classifier.api.release_events)."""

    service = "lambda"

    def __init__(
        self,
        target: str,
        event_for: Callable[[str, list[GoldenExample]], dict],
        client=None,
        endpoint_url: str | None = None,
    ):
        super().__init__(client, endpoint_url)
        self.target = target
        self.event_for = event_for

    def predict(self, model_id: str, examples: list[GoldenExample]) -> list[dict]:
        response = self.client.invoke(
            FunctionName=self.target, Payload=json.dumps(self.event_for(model_id, examples)).encode()
        )
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            error = payload if isinstance(payload, dict) else {}
            raise ReleaseCallFailed(
                f"the function failed ({error.get('errorType', response['FunctionError'])}: "
                f"{error.get('errorMessage', '')})"
            )
        status = payload.get("statusCode") if isinstance(payload, dict) else None
        try:
            body = json.loads(payload.get("body") or "null") if isinstance(payload, dict) else None
        except json.JSONDecodeError:
            body = None
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("predictions"), list):
            message = body.get("message") if isinstance(body, dict) else None
            raise ReleaseCallFailed(f"answered {status} instead of predictions ({message or 'no message'})")
        return body["predictions"]


class CodeDeployReporter(ServiceAdapter):
    """DeploymentReporter over CodeDeploy's PutLifecycleEventHookExecutionStatus."""

    service = "codedeploy"

    def report(self, deployment_id: str, execution_id: str, status: str) -> None:
        self.client.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=status
        )
