"""Retraining that can win: the fine-tuning schedule (training.image_training.run_length), the
per-metric deltas against the champion (training.champion.metric_deltas) and the job record
that carries them (domain/jobs.py)."""

from dataclasses import asdict
from pathlib import Path

import pytest

from med_classifier.domain.jobs import JobRecord
from training import chest_ct, skin_lesion
from training.candidate import TrainOptions
from training.champion import metric_deltas
from training.image_training import FineTuning, RunLength, run_length

SCHEDULE = {"epochs": 24, "smoke_epochs": 10, "patience": 6, "smoke_patience": 4, "batch_size": 32}
FINE = FineTuning(epochs=8, smoke_epochs=3, patience=3, learning_rate=3e-4)
WEIGHTS = Path("model.pt")


def length(**options) -> RunLength:
    return run_length(TrainOptions(**options), **SCHEDULE, learning_rate=3e-3, fine_tuning=FINE)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, RunLength(epochs=24, patience=6, batch_size=32, learning_rate=3e-3)),
        ({"smoke": True}, RunLength(epochs=10, patience=4, batch_size=32, learning_rate=3e-3)),
        (
            {"fine_tune": True, "pretrained": WEIGHTS},
            RunLength(epochs=8, patience=3, batch_size=32, learning_rate=3e-4),
        ),
        (
            {"fine_tune": True, "pretrained": WEIGHTS, "smoke": True},
            RunLength(epochs=3, patience=3, batch_size=32, learning_rate=3e-4),
        ),
        (
            {"fine_tune": True, "pretrained": WEIGHTS, "epochs": 5, "batch_size": 8},
            RunLength(epochs=5, patience=3, batch_size=8, learning_rate=3e-4),
        ),
        # Pretrained weights without fine_tune (--pretrained: a backbone from elsewhere): the full schedule.
        ({"pretrained": WEIGHTS}, RunLength(epochs=24, patience=6, batch_size=32, learning_rate=3e-3)),
    ],
)
def test_run_length_picks_the_schedule(options, expected):
    assert length(**options) == expected


def test_fine_tuning_needs_weights_to_start_from():
    with pytest.raises(ValueError) as info:
        length(fine_tune=True)
    assert str(info.value) == "fine-tuning starts from a model's weights: TrainOptions.pretrained is required"


@pytest.mark.parametrize("trainer", [skin_lesion, chest_ct])
def test_each_image_trainers_fine_tuning_is_shorter_and_gentler_than_from_scratch(trainer):
    fine = trainer.FINE_TUNING
    assert fine.learning_rate == pytest.approx(trainer.LEARNING_RATE / 10)
    assert fine.smoke_epochs < fine.epochs < trainer.EPOCHS and fine.patience < trainer.PATIENCE


def test_deltas_are_candidate_minus_production_on_the_metrics_both_have():
    candidate = {"test_accuracy": 0.95, "test_macro_f1": 0.9, "train_seconds": 12.0}
    production = {"test_accuracy": 0.9, "test_macro_f1": 0.925, "test_roc_auc": 0.99}
    assert metric_deltas(candidate, production) == pytest.approx({"test_accuracy": 0.05, "test_macro_f1": -0.025})
    assert metric_deltas(candidate, {}) == {}


def test_a_job_record_has_no_deltas_until_it_has_compared():
    record = JobRecord(job_id="j", model="chest-ct", trigger="manual", backend="sagemaker")
    assert (record.deltas, record.fine_tuned_from) == ({}, None)
    assert {"fine_tuned_from", "deltas"} <= set(asdict(record))  # in every record's JSON, as the schema says
