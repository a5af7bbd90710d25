"""The page's drift panel in Chromium against the local stack: after the replay script's drifted
breast-cancer stream (scripts/replay_drift.py), the panel shows the drift monitor's latest report as
GET /models/{model}/drift serves it (status in words, reasons, window, top features by PSI, the
predicted class mix against training's), and its refresh button fetches a newer report.
NOT FOR CLINICAL USE."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import expect

from scripts import replay_drift
from tests.browser.helpers import open_model
from tests.helpers.polling import wait_for

MODEL = "breast-cancer"
ROWS = 40
# The page's words for each status (index.html, DRIFT_STATUS).
STATUS_WORDS = {"ok": "OK", "warn": "Worth a look", "drift": "Drifted", "insufficient_data": "Too few predictions"}


def latest(stack) -> dict | None:
    return replay_drift.latest_report(stack["http"], stack["url"], MODEL)


def newer_than(stack, moment: datetime, n_records: int = 0) -> dict | None:
    report = latest(stack)
    if report and datetime.fromisoformat(report["generated_at"]) > moment and report["n_records"] >= n_records:
        return report
    return None


def test_the_panel_shows_the_latest_report_of_a_drifted_stream_and_refreshes_it(page, stack):
    started = datetime.now(UTC)
    replay_drift.send_rows(stack["http"], stack["url"], replay_drift.drifted_rows(ROWS), per_request=20)
    # The stack's drift monitor runs every 10 s (tests/helpers/local_stack.py); the window is an hour.
    report = wait_for(lambda: newer_than(stack, started, ROWS), 120, "a drift report that counts the stream", 1)
    assert report["status"] == "drift", report  # 90 % malignant rows, every size feature x 1.5

    open_model(page, stack, MODEL)
    expect(page.locator("#drift-section")).to_be_visible()
    verdict = page.locator("#drift-verdict")
    expect(verdict).to_have_text(STATUS_WORDS["drift"])
    expect(verdict).to_have_class("drift-status drift")
    facts = page.locator("#drift-facts dd")
    # The report the page drew may be a later run's: the same captures, so the same figures.
    shown = latest(stack)
    expect(facts.nth(0)).to_have_text(STATUS_WORDS[shown["status"]])
    expect(facts.nth(1)).to_contain_text(shown["reasons"][0])
    expect(facts.nth(2)).to_contain_text(f"({shown['n_records']} captured predictions)")
    top = [feature["name"] for feature in shown["features"][:5]]
    expect(page.locator("#drift-features tbody th")).to_have_text(top)
    expect(page.locator("#drift-features caption")).to_have_text(
        f"Top 5 of {len(shown['features'])} features by PSI (drift at {shown['thresholds']['psi_drift']} and above)"
    )
    expect(page.locator("#drift-classes tbody th")).to_have_text(list(shown["class_mix"]["observed"]))
    malignant = shown["class_mix"]["observed"]["malignant"]
    expect(page.locator("#drift-classes tbody tr").first.locator("td").first).to_have_text(f"{100 * malignant:.1f} %")
    page.shot()

    # Refresh: once the monitor has written a newer report, the button shows it.
    generated = facts.nth(3).inner_text()
    drawn_at = datetime.fromisoformat(shown["generated_at"])
    wait_for(lambda: newer_than(stack, drawn_at), 60, "a newer drift report", 1)
    page.click("#drift-refresh")
    expect(facts.nth(3)).not_to_have_text(generated)
    expect(page.locator("#drift-status")).to_have_text("")
