"""What serving keeps of its predictions for drift monitoring (domain/drift.py): a sample of each
prediction's input summary (tabular: the features; images: image statistics, never the image), its
predicted label and out-of-distribution flag, buffered per container and written in batches.

A capture never fails a prediction: a write that fails is logged and its batch dropped (the buffer
stays bounded). NOT FOR CLINICAL USE."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ports import CaptureWriter
    from .serving import PredictionResult

logger = logging.getLogger(__name__)


def capture_records(result: PredictionResult, captured_at: datetime, keep: Callable[[], bool]) -> list[dict]:
    """One record per prediction that `keep()` samples: its input summary, label and OOD flag
    (None when the prediction carries none)."""
    stamp = captured_at.astimezone(UTC).isoformat()
    return [
        {
            "captured_at": stamp,
            "version": result.version,
            "inputs": inputs,
            "label": prediction["label"],
            "in_distribution": prediction.get("in_distribution"),
        }
        for prediction, inputs in zip(result.predictions, result.inputs)
        if keep()
    ]


@dataclass(frozen=True)
class CapturePolicy:
    sample_rate: float  # share of predictions kept, 0..1
    batch_size: int  # a model's buffer is written once it holds this many records...
    flush_seconds: float  # ...or its oldest record is this old (checked at each capture)


@dataclass
class _Pending:
    records: list[dict] = field(default_factory=list)
    since: float = 0.0  # monotonic time of the oldest record


class CaptureBuffer:
    """Per-container buffers, one a model, written by `writer` as one object a batch."""

    def __init__(
        self,
        writer: CaptureWriter,
        policy: CapturePolicy,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ):
        self.writer, self.policy = writer, policy
        self._clock, self._now = clock, now
        self._rng = rng or random.Random()
        self._pending: dict[str, _Pending] = {}
        self.written = 0  # records written, for tests and logs
        self.dropped = 0  # records lost to failed writes

    def _keep(self) -> bool:
        rate = self.policy.sample_rate
        return rate >= 1.0 or (rate > 0.0 and self._rng.random() < rate)

    def add(self, model_id: str, result: PredictionResult) -> int:
        """Samples `result`'s predictions into the model's buffer and writes every buffer that is due.
        Returns how many records were written now."""
        try:
            records = capture_records(result, self._now(), self._keep)
        except Exception as exc:  # a capture must never fail the prediction it follows
            logger.warning("drift capture skipped", extra={"model": model_id, "error": repr(exc)})
            return 0
        if records:
            pending = self._pending.setdefault(model_id, _Pending())
            if not pending.records:
                pending.since = self._clock()
            pending.records.extend(records)
        return self.flush(due_only=True)

    def flush(self, due_only: bool = False) -> int:
        """Writes each model's buffer (only those due: full or old enough, with `due_only`)."""
        written = 0
        now = self._clock()
        for model_id, pending in list(self._pending.items()):
            if not pending.records:
                continue
            full = len(pending.records) >= self.policy.batch_size
            if due_only and not full and now - pending.since < self.policy.flush_seconds:
                continue
            batch, pending.records = pending.records, []
            try:
                self.writer.write_captures(model_id, batch, self._now())
                written += len(batch)
            except Exception as exc:  # a capture must never fail the prediction it follows
                self.dropped += len(batch)
                logger.warning(
                    "drift capture not written", extra={"model": model_id, "records": len(batch), "error": str(exc)}
                )
        self.written += written
        return written
