"""`make rehearse`: python -m scripts.rehearse [--template template.yaml] [--out artifacts/rehearsal] [--no-lint]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.rehearse.report import render

REPO_ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.rehearse", description=__doc__)
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "rehearsal")
    parser.add_argument("--no-lint", dest="lint", action="store_false", help="skip cfn-lint (about 10 s)")
    args = parser.parse_args(argv)
    from scripts.rehearse.rehearsal import rehearse

    result = rehearse(args.template, args.out, run_lint=args.lint)
    report = render(result)
    (args.out / "report.md").write_text(report + "\n")
    print(report)
    print(f"\nReport: {args.out / 'report.md'}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
