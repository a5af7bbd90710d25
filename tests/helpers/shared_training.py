"""Smoke-trained candidates shared by the processes of one test session. `make test` runs two
pytest-xdist workers that both need the four trained models (the integration tests in one, the local
stacks in the other); the first worker to ask trains a model and pickles it into the session's folder,
the other waits on the file lock and loads it, instead of training the same model a second time on the
same two cores. The folder is made by the controlling process and removed at the session's end
(tests/conftest.py), so nothing outlives a session. Without it (a single process) each model is trained
once in that process, as before."""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

FOLDER_VARIABLE = "MED_CLASSIFIER_TEST_MODELS"

T = TypeVar("T")


def new_session_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="med-classifier-test-models-"))
    os.environ[FOLDER_VARIABLE] = str(folder)  # the workers, started after this, inherit it
    return folder


def shared_across_workers(train: Callable[..., T]) -> Callable[..., T]:
    """functools.cache, across the session's processes as well (see the module's docstring)."""
    signature = inspect.signature(train)

    @functools.cache
    @functools.wraps(train)
    def trained(*args, **kwargs) -> T:
        folder = os.environ.get(FOLDER_VARIABLE)
        if not folder:
            return train(*args, **kwargs)
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        key = f"{train.__module__}.{train.__qualname__}{sorted(call.arguments.items())!r}"
        path = Path(folder) / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.pickle"
        with FileLock(f"{path}.lock"):
            if path.exists():
                return pickle.loads(path.read_bytes())
            value = train(*args, **kwargs)
            partial = path.with_suffix(".partial")
            partial.write_bytes(pickle.dumps(value))
            partial.replace(path)
            return value

    return trained
