"""Domain errors. Each carries the HTTP status an API adapter should map it to."""


class ClassifierError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: list | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidInput(ClassifierError):
    status_code = 422
    code = "invalid_input"


class UnknownModel(ClassifierError):
    status_code = 404
    code = "unknown_model"


class PayloadTooLarge(ClassifierError):
    status_code = 413
    code = "payload_too_large"


class ModelUnavailable(ClassifierError):
    """No loadable version: nothing published yet, or every candidate is broken."""

    status_code = 503
    code = "model_unavailable"


class UnsupportedMediaType(ClassifierError):
    status_code = 415
    code = "unsupported_media_type"


class Conflict(ClassifierError):
    """The request clashes with the current state (e.g. a retraining job is already running)."""

    status_code = 409
    code = "conflict"


class IntegrityError(Exception):
    """A stored artefact does not match what its manifest or pointer promises."""


class ServiceUnavailable(ClassifierError):
    """A service the request needs failed or refused (e.g. the training service did not start a job)."""

    status_code = 503
    code = "service_unavailable"


class NotSignedIn(ClassifierError):
    """The request carries no verified caller (API Gateway's Cognito authorizer gave no claims)."""

    status_code = 401
    code = "not_signed_in"


class Forbidden(ClassifierError):
    """The caller is signed in, but not in a group that may do this."""

    status_code = 403
    code = "forbidden"


class NoDriftReport(ClassifierError):
    """The model exists but the drift monitor has written no report for it yet."""

    status_code = 404
    code = "no_drift_report"
