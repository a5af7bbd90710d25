"""A throwaway SAM project for the local runner's tests: a template and one function's handler."""

import os
from contextlib import contextmanager
from pathlib import Path

from scripts.local_runner import LocalFunctions


def function_project(root: Path, template: str, handler: str, **files: str) -> Path:
    """`root`/template.yaml and `root`/fn/app.py (CodeUri fn/, Handler app.handler), plus `files` by name."""
    (root / "fn").mkdir()
    (root / "fn" / "app.py").write_text(handler)
    (root / "template.yaml").write_text(template)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@contextmanager
def local_functions(project: Path):
    functions = LocalFunctions(str(project / "template.yaml"))
    try:
        yield functions
    finally:
        functions.stop()


def process_exists(pid: int) -> bool:
    """True also for a zombie, so a worker that was never reaped counts as a leak."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
