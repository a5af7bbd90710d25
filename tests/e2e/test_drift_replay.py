"""The README's replay (scripts/replay_drift.py) against the local stack: the drifted stream goes through
the API, the predict functions capture it, the drift monitor runs on its schedule (every 10 s here) and
GET /models/{model}/drift serves a report that counts the stream."""

from __future__ import annotations

from datetime import UTC, datetime

from scripts import replay_drift

ROWS = 40


def test_the_replay_script_gets_a_report_that_counts_its_stream(stack, capsys):
    started = datetime.now(UTC)
    args = ["--api", stack["url"], "--token", stack["tokens"]["clinician"], "--rows", str(ROWS)]
    assert replay_drift.main([*args, "--images", "8", "--wait", "120"]) == 0
    printed = capsys.readouterr().out
    assert f"'breast-cancer': {ROWS}" in printed and "breast-cancer: " in printed

    answer = stack["http"].get(f"{stack['url']}/models/breast-cancer/drift", timeout=30)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert datetime.fromisoformat(report["generated_at"]) > started
    assert report["n_records"] >= ROWS  # the stream, and whatever else this session predicted in the window
    manifest = stack["store"].read_manifest("breast-cancer", stack["store"].read_pointer("breast-cancer").version)
    if manifest.ood is None:  # published without a drift reference: nothing to compare, never "ok"
        assert report["status"] == "no_reference", report
    else:  # 90 % malignant rows with every size feature x 1.5
        assert report["status"] == "drift" and "mean radius" in report["drifted_features"], report
