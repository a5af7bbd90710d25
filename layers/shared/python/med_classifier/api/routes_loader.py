"""A predict function's routes, imported on the first request its fast path does not answer.

Powertools' resolver with request validation (its event handlers, OpenAPI parameter models and our
pydantic response models) is a large part of a predict function's cold start, and its successful
predictions never need it (api.fast_path). So each predict function keeps its resolver in a module
of its own, routes.py next to its handler module. `load_routes` imports it under a name derived from
the handler module's (a test that imports two functions, or one function twice, gets separate
modules) and hands it the handler module as `handler`: the routes then use the very settings,
services and metrics the fast path uses.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_routes(handler: ModuleType, filename: str = "routes.py") -> ModuleType:
    name = f"{handler.__name__}_routes"
    spec = importlib.util.spec_from_file_location(name, Path(handler.__file__).with_name(filename))
    module = importlib.util.module_from_spec(spec)
    module.handler = handler
    sys.modules[name] = module  # Powertools resolves the routes' annotations through it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
