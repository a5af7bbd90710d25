"""scripts/cost.py's arithmetic on fixed inputs, and what it reads from template.yaml (README "What it costs")."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from scripts.cost import (
    LAMBDA_GB_SECOND,
    LAMBDA_REQUEST,
    Assumptions,
    Measured,
    Serving,
    access_log_line,
    billed_ms,
    gb_seconds,
    lambda_ms,
    monthly,
    parameter,
    serving,
    traced_share,
    training_job,
)
from scripts.local_resources import load_template

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(REPO_ROOT / "template.yaml")


def test_a_million_10_ms_requests_at_1024_mb_are_10000_gb_seconds():
    assert gb_seconds(1_000_000, 10, 1024) == pytest.approx(10_000)
    assert gb_seconds(1_000_000, 10, 1024) * LAMBDA_GB_SECOND.usd == pytest.approx(0.166667)  # $0.17
    assert 1_000_000 * LAMBDA_REQUEST.usd == pytest.approx(0.20)


def test_lambda_bills_each_request_rounded_up_to_the_next_millisecond():
    assert [billed_ms(ms) for ms in (0.2, 1.0, 1.0001, 10.0, 10.5)] == [1, 1, 2, 10, 11]


def test_below_one_vcpu_a_handler_takes_longer_in_proportion():
    assert lambda_ms(1.0, 1024) == pytest.approx(1769 / 1024)
    assert lambda_ms(1.0, 1769) == 1.0
    assert lambda_ms(1.0, 2048) == 1.0


def test_default_sampling_traces_most_requests_of_a_slow_stream_and_5_percent_of_a_fast_one():
    assert traced_share(1e-6) == pytest.approx(1.0)
    assert traced_share(1_000_000 / (30 * 24 * 3600)) == pytest.approx(0.83820, abs=1e-5)
    assert traced_share(1000.0) == pytest.approx(0.05 + 0.95 / 1000)


def test_a_months_costs_on_a_fixed_input():
    measured = Measured(samples_ms=(0.6, 0.6, 1.4), log_bytes=500)
    costs = monthly(measured, Serving("PredictFunction", 1024), refresh_s=60, access_log=600, a=Assumptions())
    # 0.6 ms and 1.4 ms here take 1769/1024 times longer at 1024 MB: 1.04 and 2.42 ms, billed 2 and 3 ms.
    assert costs.billed_ms == pytest.approx(7 / 3)
    assert costs.lambda_warm == pytest.approx(1e6 * 7 / 3 / 1000 * 0.0000166667)
    # 1 % cold starts of 533 ms at 1 GB.
    assert costs.lambda_cold == pytest.approx(10_000 * 0.533 * 0.0000166667)
    assert (costs.lambda_requests, costs.api) == (pytest.approx(0.20), pytest.approx(3.50))
    # One warm instance re-reads the pointer once a minute (43,200 in 30 days); each cold start reads 3 objects.
    assert costs.s3 == pytest.approx((43_200 + 30_000) * 0.0004 / 1000)
    # 500 bytes of the handler's, 250 of Lambda's, 600 of API Gateway's access log per request.
    assert costs.logs == pytest.approx(1.35 * 0.50)
    assert costs.traces == pytest.approx(1e6 * 0.83820 * 5.00 / 1e6, abs=1e-4)
    assert costs.total == pytest.approx(
        sum([costs.lambda_warm, costs.lambda_cold, 0.20, 3.50, costs.s3, costs.logs, costs.traces])
    )


def test_pointer_reads_never_outnumber_requests():
    few = Assumptions(requests=1000)
    costs = monthly(Measured((1.0,), 0), Serving("PredictFunction", 1024), refresh_s=60, access_log=0, a=few)
    assert costs.s3 == pytest.approx((1000 + 10 * 3) * 0.0004 / 1000)
    every_request = monthly(Measured((1.0,), 0), Serving("PredictFunction", 1024), refresh_s=0, access_log=0, a=few)
    assert every_request.s3 == costs.s3


def test_a_retraining_job_costs_its_instance_time():
    assert training_job(3600, "ml.m5.xlarge") == pytest.approx(0.23)
    assert training_job(float(parameter(TEMPLATE, "TrainingMaxRuntimeSeconds")), "ml.m5.xlarge") == pytest.approx(0.69)


# --- what it reads from the template --------------------------------------------------------------------------------


def test_each_model_is_served_by_its_function_with_its_memory():
    assert {model: serving(TEMPLATE, model) for model in ("breast-cancer", "breast-cancer-lite", "skin-lesion")} == {
        "breast-cancer": Serving("PredictFunction", 1024),
        "breast-cancer-lite": Serving("PredictFunction", 1024),
        "skin-lesion": Serving("ImagePredictFunction", 2048),
    }


def test_memory_comes_from_the_template(tmp_path):
    copy = tmp_path / "template.yaml"
    shutil.copy(REPO_ROOT / "template.yaml", copy)
    text = copy.read_text()
    assert text.count("\n    MemorySize: 1024\n") == 1 and text.count("\n      MemorySize: 2048\n") == 1
    copy.write_text(
        text.replace("\n    MemorySize: 1024\n", "\n    MemorySize: 512\n").replace(
            "\n      MemorySize: 2048\n", "\n      MemorySize: 4096\n"
        )
    )
    changed = load_template(copy)
    assert serving(changed, "breast-cancer") == Serving("PredictFunction", 512)  # the Globals' MemorySize
    assert serving(changed, "chest-ct") == Serving("ImagePredictFunction", 4096)
    measured, a = Measured((3.0,), 0), Assumptions()
    before = monthly(measured, serving(TEMPLATE, "chest-ct"), 60, 0, a)
    after = monthly(measured, serving(changed, "chest-ct"), 60, 0, a)
    assert after.lambda_warm == pytest.approx(2 * before.lambda_warm)


def test_the_access_log_line_is_the_templates_format_filled_in():
    line = access_log_line(TEMPLATE)
    fields = json.loads(line)
    assert len(fields) == 17 and fields["resourcePath"] == "/models/{model}/predict" and "$context" not in line
    assert math.isclose(len(line.encode()), 600, rel_tol=0.2)


def test_snapstart_costs_a_cached_gb_all_month_and_each_restored_gb():
    from scripts.cost import snapstart_month

    cache, restores = snapstart_month(1024, 1000)
    assert cache == pytest.approx(1 * 30 * 24 * 3600 * 0.0000015046)  # $3.90 a month for one 1 GB version
    assert restores == pytest.approx(1000 * 0.0001397998)
    assert snapstart_month(2048, 1000) == pytest.approx((2 * cache, 2 * restores))


def test_the_snapstart_functions_and_their_memory_come_from_the_template():
    from scripts.cost import snapstart_functions

    assert snapstart_functions(TEMPLATE) == {
        "PredictFunction": 1024,
        "ImagePredictFunction": 2048,
        "RetrainingApiFunction": 512,
    }
    changed = json.loads(json.dumps(TEMPLATE))
    del changed["Resources"]["RetrainingApiFunction"]["Properties"]["SnapStart"]
    changed["Resources"]["PredictFunction"]["Properties"]["MemorySize"] = 3008
    assert snapstart_functions(changed) == {"PredictFunction": 3008, "ImagePredictFunction": 2048}
