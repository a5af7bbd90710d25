"""The request a PreTraffic hook sends a new predict function version: what API Gateway (REST, Lambda
proxy) would pass for POST /models/{model}/predict with the model's golden examples as JSON, from a
signed-in clinician (the functions check the caller's group themselves)."""

from __future__ import annotations

import json

from ..domain.golden import request_body
from ..domain.manifest import GoldenExample
from .caller import CLINICIANS

# Who the hook's requests come from: what API Gateway's Cognito authorizer would pass for a
# clinician, since the predict functions check the caller's group themselves.
HOOK_CLAIMS = {
    "sub": "codedeploy-pre-traffic-hook",
    "cognito:username": "pre-traffic-hook",
    "cognito:groups": CLINICIANS,
}


def predict_event(model_id: str, examples: list[GoldenExample]) -> dict:
    """A REST API (Lambda proxy) event of POST /models/{model}/predict with the golden examples as JSON."""
    path = f"/models/{model_id}/predict"
    # Image models have literal routes (template: ImagePredictFunction's events), tabular ones the {model} route.
    resource = path if any(example.image_png for example in examples) else "/models/{model}/predict"
    return {
        "resource": resource,
        "path": path,
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "Accept": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"], "Accept": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"model": model_id},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": "POST",
            "path": path,
            "stage": "pre-traffic",
            "requestId": f"pre-traffic-{model_id}",
            "identity": {"sourceIp": "127.0.0.1"},
            "authorizer": {"claims": dict(HOOK_CLAIMS)},
        },
        "body": json.dumps(request_body(examples)),
        "isBase64Encoded": False,
    }
