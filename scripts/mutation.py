"""`make mutation`: mutation testing of the shared package's core with mutmut.

Not part of `make test` (it takes minutes). mutmut changes one thing at a time in a
module (a comparison, a constant, a string, a call argument...) and runs the fast tests
that reach the changed function; a mutant no test notices "survives" and points at a
missing test. This prints the score and every surviving mutant per module.

mutmut names a mutant after its file path with a leading `src/` stripped, while the
tests import `med_classifier.*`, which lives in layers/shared/python/. So the run happens
in a staging folder (.mutation/, git-ignored) where a copy of the package sits at
src/med_classifier and the folders the tests read are linked in; mutmut copies them into
.mutation/mutants/ and never touches the working tree.

Equivalent mutants (no test can tell them from the original, e.g. a changed default that
every caller overrides) are listed with the reason in tests/mutation_equivalents.toml
and left out of the score; the README's table is this script's --markdown output.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "layers" / "shared" / "python" / "med_classifier"
STAGE = REPO / ".mutation"
EQUIVALENTS = REPO / "tests" / "mutation_equivalents.toml"
# The domain and adapter modules whose guards the rest of the product relies on.
MODULES = (
    "domain.tabular",
    "domain.uploads",
    "adapters.upload_counter",
    "adapters.model_store",
    "domain.manifest",
    "domain.preprocessing",
    "domain.serving",
    "domain.retraining",
)
# Not linked into the stage: caches, state, the environment, and what the stage writes itself.
NOT_LINKED = {"pyproject.toml", "artifacts", "build", "docs"}
# The fast tests (make test-fast without -n): no stack, no browser, no training.
# Not the mutation tool's own tests: they stage a copy of the project, which inside mutmut's
# copy would link back into itself.
TEST_SELECTION = ["tests/unit", "tests/integration", "-m", "not slow", "--ignore=tests/unit/test_mutation_tool.py"]
KILLED = {"killed", "timeout", "caught by type check", "segfault"}


def module_path(module: str) -> Path:
    """domain.tabular → src/med_classifier/domain/tabular.py (as staged)."""
    return Path("src/med_classifier", *module.split(".")).with_suffix(".py")


def stage(modules) -> None:
    """A fresh staging folder: the package copied to src/, the rest linked."""
    shutil.rmtree(STAGE, ignore_errors=True)
    (STAGE / "src").mkdir(parents=True)
    shutil.copytree(PACKAGE, STAGE / "src" / "med_classifier", ignore=shutil.ignore_patterns("__pycache__"))
    project = linked()
    for name in project:
        (STAGE / name).symlink_to(REPO / name)
    pytest_options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    (STAGE / "pyproject.toml").write_text(
        "\n".join(
            [
                "[tool.mutmut]",
                'source_paths = ["src/med_classifier"]',
                f"only_mutate = {toml_list(str(module_path(m)) for m in modules)}",
                f"also_copy = {toml_list(name for name in project if name != 'tests')}",
                f"pytest_add_cli_args_test_selection = {toml_list(TEST_SELECTION)}",
                'pytest_add_cli_args = ["-p", "no:cacheprovider"]',
                "",
                "[tool.pytest.ini_options]",
                f"markers = {toml_list(pytest_options['markers'])}",
                f"filterwarnings = {toml_list(pytest_options['filterwarnings'])}",
                "",
            ]
        )
    )


def linked() -> list[str]:
    """What the tests may read besides the package: the project's top-level files and folders
    (mutmut copies them into mutants/)."""
    return sorted(
        path.name
        for path in REPO.iterdir()
        if not path.name.startswith(".") and path.name not in NOT_LINKED and not path.name.endswith(".egg-info")
    )


def toml_list(items) -> str:
    return "[" + ", ".join('"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items) + "]"


def run_mutmut(budget_seconds: float, max_children: int) -> str | None:
    """Runs mutmut in the stage; returns what went wrong, or None."""
    command = [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(max_children)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    log = STAGE / "mutmut.log"
    print(f"mutmut is running ({', '.join(command[1:])}); its output goes to {log.relative_to(REPO)}", flush=True)
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=STAGE, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        code = process.wait(timeout=budget_seconds)
        if code:
            print(log.read_text(errors="replace")[-5000:])
            return f"mutmut exited with {code}"
        return None
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return f"the budget ({budget_seconds / 60:.0f} min) ran out"


@dataclass
class ModuleResult:
    module: str
    statuses: Counter = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def killed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status in KILLED)

    @property
    def score(self) -> float:
        counted = self.total - len(self.equivalent)
        return self.killed / counted if counted else 1.0


def collect(modules, equivalents: dict[str, str]) -> list[ModuleResult]:
    """Reads mutmut's per-file results (mutants/<path>.meta) through mutmut's own API."""
    os.chdir(STAGE)  # mutmut's readers use paths relative to the stage
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code

    results = []
    for module in modules:
        data = SourceFileMutationData(path=module_path(module))
        data.load()
        result = ModuleResult(module)
        for name, exit_code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[exit_code]
            result.statuses[status] += 1
            if status not in KILLED:
                (result.equivalent if name in equivalents else result.survivors).append(name)
        results.append(result)
    return results


def mutant_diff(name: str) -> str:
    from mutmut.__main__ import find_mutant, get_diff_for_mutant

    return get_diff_for_mutant(name, path=find_mutant(name).path)


def print_report(results: list[ModuleResult], equivalents: dict[str, str], show_diffs: bool) -> None:
    print(f"\n{'module':<26} {'mutants':>8} {'killed':>7} {'equivalent':>11} {'survived':>9} {'score':>7}   other")
    for r in results:
        other = ", ".join(f"{n} {s}" for s, n in sorted(r.statuses.items()) if s not in KILLED | {"survived"})
        print(
            f"{r.module:<26} {r.total:>8} {r.killed:>7} {len(r.equivalent):>11} {len(r.survivors):>9} "
            f"{r.score:>6.1%}   {other}"
        )
    for r in results:
        for name in r.survivors:
            print(f"\nSURVIVED {name}")
            if show_diffs:
                print(mutant_diff(name))
        for name in r.equivalent:
            print(f"\nequivalent {name}: {equivalents[name]}")
    found = {name for r in results for name in r.equivalent}
    checked = tuple(f"med_classifier.{r.module}." for r in results)  # entries of modules not run are not stale
    for name in sorted(n for n in set(equivalents) - found if n.startswith(checked)):
        print(f"\nSTALE entry in {EQUIVALENTS.name} (no longer a surviving mutant): {name}")


def markdown(results: list[ModuleResult], equivalents: dict[str, str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"`make mutation`, {stamp} (mutmut 3.8.1, the fast tests):",
        "",
        "| module | mutants | killed | equivalent | survived | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| `{r.module}` | {r.total} | {r.killed} | {len(r.equivalent)} | {len(r.survivors)} | {r.score:.1%} |"
        )
    explained = [(name, equivalents[name]) for r in results for name in r.equivalent]
    if explained:
        lines += ["", "Equivalent mutants (left out of the score; `tests/mutation_equivalents.toml`):", ""]
        lines += [f"- `{name}`: {why}" for name, why in explained]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=60.0,
        help="stop mutmut after this long and report what was checked (default 60)",
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--modules", nargs="+", choices=MODULES, default=list(MODULES), help="only these modules (default: all of them)"
    )
    parser.add_argument("--report-only", action="store_true", help="report the last run's results")
    parser.add_argument("--diffs", action="store_true", help="print each survivor's diff")
    parser.add_argument("--markdown", type=Path, help="also write the result table to this file")
    parser.add_argument(
        "--min-score", type=float, default=0.85, help="exit 1 if a module scores below this (default 0.85)"
    )
    args = parser.parse_args(argv)

    equivalents = tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", {}) if EQUIVALENTS.exists() else {}
    problem = None
    if not args.report_only:
        stage(args.modules)
        started = time.monotonic()
        problem = run_mutmut(args.budget_minutes * 60, args.max_children)
        print(f"\nmutmut ran for {time.monotonic() - started:.0f} s{': ' + problem if problem else ''}")
    results = collect(args.modules, equivalents)
    print_report(results, equivalents, args.diffs)
    if args.markdown:
        args.markdown.write_text(markdown(results, equivalents))
    low = [r.module for r in results if r.score < args.min_score or not r.total]
    if low or problem:
        print(f"\nbelow {args.min_score:.0%} (or not run): {', '.join(low) or '-'}; {problem or 'run complete'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
