"""SnapStart runtime hooks of the API functions (template: SnapStart ApplyOn PublishedVersions; README,
"SnapStart"). Lambda runs a function's init once when a version is published, calls the before-snapshot
hooks and snapshots the memory; each new instance resumes from that snapshot and calls the
after-restore hooks. The runtime includes snapshot-restore-py, which registers them.

Before the snapshot: build what the first request would build (settings, services, boto3 and its
clients, the routes; the predict functions also load and probe every production model of their kind).
After a restore: drop every boto3 client (a pooled connection or cached credentials from the snapshot
must not be shared by instances), then re-read the models' pointers, so a version promoted since the
snapshot serves from the first request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from snapshot_restore_py import register_after_restore, register_before_snapshot

from .adapters.aws_clients import forget_clients, make_clients

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from .domain.serving import ModelCache


def register(
    logger: Logger,
    prepare: Callable[[], object],
    model_cache: Callable[[], ModelCache] | None = None,
    kind: str | None = None,
    restored: Callable[[], None] | None = None,
) -> None:
    """Registers a function's two hooks. `prepare` builds its services and routes; `model_cache` and
    `kind`: the cache whose production models of that kind go into the snapshot; `restored`: what else
    the function resets per instance."""

    def before_snapshot() -> None:
        prepare()
        make_clients()
        if model_cache is not None:
            logger.info("snapshot", extra={"models": model_cache().load_production(kind)})

    def after_restore() -> None:
        dropped = forget_clients()
        if restored is not None:
            restored()
        if model_cache is not None:
            model_cache().refresh_now()
        logger.info("restored", extra={"clients_dropped": dropped})

    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
