"""The domain's Protocols are what its adapters and the unit tests' fakes implement: same
methods, same parameters (names, kinds, defaults). A fake that drifts from the adapter it
stands in for would make unit tests pass against behaviour production never has."""

from __future__ import annotations

import inspect

import pytest

from med_classifier.adapters.capture_store import S3MonitoringStore
from med_classifier.adapters.jobs_table import JobsTable
from med_classifier.adapters.launchers import BatchLauncher, SageMakerLauncher
from med_classifier.adapters.model_store import ModelStore
from med_classifier.adapters.s3_uploads import S3UploadSigner
from med_classifier.adapters.upload_counter import UploadCounter
from med_classifier.adapters.upload_store import S3UploadStore
from med_classifier.domain.ports import (
    CaptureWriter,
    CounterStore,
    JobStore,
    Launcher,
    ModelReader,
    MonitoringStore,
    UploadSigner,
    UploadStore,
)
from tests.helpers.fakes import (
    MemoryCounter,
    MemoryJobs,
    MemoryMonitoring,
    MemoryStore,
    MemoryUploads,
    RecordingLauncher,
)

IMPLEMENTATIONS = [
    (ModelReader, ModelStore),
    (ModelReader, MemoryStore),
    (CounterStore, UploadCounter),
    (CounterStore, MemoryCounter),
    (JobStore, JobsTable),
    (JobStore, MemoryJobs),
    (Launcher, SageMakerLauncher),
    (Launcher, BatchLauncher),
    (Launcher, RecordingLauncher),
    (UploadSigner, S3UploadSigner),
    (UploadStore, S3UploadStore),
    (UploadStore, MemoryUploads),
    (CaptureWriter, S3MonitoringStore),
    (CaptureWriter, MemoryMonitoring),
    (MonitoringStore, S3MonitoringStore),
    (MonitoringStore, MemoryMonitoring),
]


def protocol_methods(protocol) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(protocol).items()
        if callable(member) and not name.startswith("_")
    }


def parameters(signature: inspect.Signature) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize(
    "protocol, implementation", IMPLEMENTATIONS, ids=[f"{p.__name__}-{i.__name__}" for p, i in IMPLEMENTATIONS]
)
def test_each_adapter_and_fake_implements_its_protocol_with_the_same_signatures(protocol, implementation):
    methods = protocol_methods(protocol)
    assert methods, f"{protocol.__name__} declares no methods"
    for name, expected in methods.items():
        actual = getattr(implementation, name, None)
        assert callable(actual), f"{implementation.__name__} lacks {name}"
        assert parameters(inspect.signature(actual)) == parameters(expected), f"{implementation.__name__}.{name}"


@pytest.mark.parametrize("launcher", [SageMakerLauncher, BatchLauncher, RecordingLauncher])
def test_every_launcher_names_its_backend(launcher):
    assert launcher.backend in ("sagemaker", "batch")


def test_a_class_missing_a_method_is_not_a_counter_store():
    class HalfCounter:
        def count(self, upload):
            return True

    assert not isinstance(HalfCounter(), CounterStore)
    assert isinstance(MemoryCounter(), CounterStore)
