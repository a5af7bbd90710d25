"""The skin-lesion model, smoke-trained once per test session on synthetic HAM10000-layout
data. The synthetic images (and nothing else) go to a temporary state dir that is
removed afterwards: never .local/ in the repo, never the caller's LOCAL_STATE_DIR."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.helpers.shared_training import shared_across_workers
from training.candidate import Candidate, TrainOptions


@shared_across_workers
def skin_lesion_candidate(seed: int = 42) -> Candidate:
    from training import skin_lesion

    state = Path(tempfile.mkdtemp(prefix="skin-lesion-smoke-"))
    previous = os.environ.get("LOCAL_STATE_DIR")
    os.environ["LOCAL_STATE_DIR"] = str(state)
    try:
        return skin_lesion.train(TrainOptions(smoke=True, seed=seed))
    finally:
        if previous is None:
            os.environ.pop("LOCAL_STATE_DIR", None)
        else:
            os.environ["LOCAL_STATE_DIR"] = previous
        shutil.rmtree(state, ignore_errors=True)
