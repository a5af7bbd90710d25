"""A launcher that records the jobs it is asked to start (or fails with the given error),
for the retraining decisions' unit tests and the moto-backed loop tests alike."""


class RecordingLauncher:
    backend = "sagemaker"

    def __init__(self, error: Exception | None = None):
        self.started, self.error = [], error

    def start(self, request):
        if self.error:
            raise self.error
        self.started.append(request)
        return f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{request.job_id}"
