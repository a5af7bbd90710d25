"""The two Keras models, smoke-trained once per test session (seed 42).

Training runs with LOCAL_STATE_DIR pointing at a throwaway directory, so the synthetic
chest CT images never land in the repository's .local/; it is restored afterwards
(a test's own state_dir fixture keeps working).
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from tests.helpers.shared_training import shared_across_workers
from training.candidate import Candidate, TrainOptions


@contextlib.contextmanager
def temporary_state_dir():
    previous = os.environ.get("LOCAL_STATE_DIR")
    with tempfile.TemporaryDirectory(prefix="keras-models-state-") as tmp:
        os.environ["LOCAL_STATE_DIR"] = tmp
        try:
            yield tmp
        finally:
            if previous is None:
                os.environ.pop("LOCAL_STATE_DIR", None)
            else:
                os.environ["LOCAL_STATE_DIR"] = previous


@shared_across_workers
def breast_cancer_lite_candidate(seed: int = 42) -> Candidate:
    from training import breast_cancer_lite

    with temporary_state_dir():
        return breast_cancer_lite.train(TrainOptions(smoke=True, seed=seed))


@shared_across_workers
def chest_ct_candidate(seed: int = 42) -> Candidate:
    from training import chest_ct

    with temporary_state_dir():
        return chest_ct.train(TrainOptions(smoke=True, seed=seed))
