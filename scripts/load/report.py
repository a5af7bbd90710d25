"""The table `make load` prints: per route, requests, req/s, p50/p95/p99 and errors, from Locust's
`--csv` files (<prefix>_stats.csv, <prefix>_failures.csv). Standard library only.

    python -m scripts.load.report artifacts/load/load

Locust keeps response times in buckets (exact below 100 ms, to 10 ms below 1 s, to 100 ms above),
so its percentiles are rounded the same way. Exits 1 when any request failed or none was made.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

TOTAL = "Aggregated"  # Locust's name for the all-routes row


def read_stats(stats_csv: str) -> list[dict[str, str]]:
    """The routes' rows sorted by route, then the all-routes row."""
    rows = list(csv.DictReader(io.StringIO(stats_csv)))
    routes = sorted((row for row in rows if row["Name"] != TOTAL), key=route)
    return routes + [row for row in rows if row["Name"] == TOTAL]


def route(row: dict[str, str]) -> str:
    if row["Name"] == TOTAL:
        return "all routes"
    return f"{row.get('Type') or row.get('Method')} {row['Name']}".strip()


def _ms(value: str) -> str:
    return "—" if value in ("", "N/A") else f"{float(value):,.0f}"


def format_table(stats_csv: str) -> str:
    lines = [
        "| route | requests | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in read_stats(stats_csv):
        name = route(row)
        cells = [
            f"`{name}`" if row["Name"] != TOTAL else f"**{name}**",
            f"{int(row['Request Count']):,}",
            f"{float(row['Requests/s']):.1f}",
            _ms(row["50%"]),
            _ms(row["95%"]),
            _ms(row["99%"]),
            f"{int(row['Failure Count']):,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_failures(failures_csv: str) -> str:
    """One line per distinct failure, most frequent first; "" when there was none."""
    rows = sorted(csv.DictReader(io.StringIO(failures_csv)), key=lambda row: -int(row["Occurrences"]))
    return "\n".join(f"{row['Occurrences']} x {row['Method']} {row['Name']}: {row['Error']}" for row in rows)


def totals(stats_csv: str) -> tuple[int, int]:
    """(requests, failures) over every route."""
    (total,) = (row for row in read_stats(stats_csv) if row["Name"] == TOTAL)
    return int(total["Request Count"]), int(total["Failure Count"])


def report(prefix: str | Path) -> tuple[str, int]:
    """The text to print for the run whose CSV files start with `prefix`, and the exit status."""
    stats = Path(f"{prefix}_stats.csv").read_text()
    failures_path = Path(f"{prefix}_failures.csv")
    failures = format_failures(failures_path.read_text()) if failures_path.exists() else ""
    requests, failed = totals(stats)
    text = format_table(stats)
    if failures:
        text += "\n\nErrors:\n" + failures
    if requests == 0:
        text += "\n\nNo request was made."
    return text, 1 if failed or requests == 0 else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scripts.load.report CSV_PREFIX", file=sys.stderr)
        return 2
    text, status = report(args[0])
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
