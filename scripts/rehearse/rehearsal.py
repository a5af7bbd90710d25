"""One rehearsal: package, translate, prepare, create the stack in a fresh moto, compare, lint."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from scripts.local_iam import translate
from scripts.local_resources import load_template
from scripts.rehearse import lint, prepare
from scripts.rehearse.compare import Comparison, Live, compare
from scripts.rehearse.gaps import LOWERCASE_NAMES, SKIPPED_TYPES, STAND_INS
from scripts.rehearse.stack import ARTIFACT_BUCKET, STACK_NAME, LiveStack, create_stack, package, start_moto


@dataclass
class Rehearsal:
    template: Path
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds
    artefacts: int = 0  # objects `sam package` uploaded
    translated: dict = field(default_factory=dict)  # what samtranslator made of the packaged template
    expected: dict = field(default_factory=dict)  # translated, conditions applied, stand-ins in place
    left_out: dict[str, str] = field(default_factory=dict)  # logical id -> its false condition
    stand_ins: list[str] = field(default_factory=list)  # logical ids whose Refs got a stand-in
    routes_added: dict[str, list[str]] = field(default_factory=dict)  # REST API -> Resource/Method ids added
    named: list[str] = field(default_factory=list)  # logical ids given a lowercase name
    stack: LiveStack | None = None
    stack_error: str = ""
    comparison: Comparison | None = None
    lint_result: lint.LintResult | None = None
    live: Live | None = field(default=None, repr=False)  # the rehearsal's moto, while it runs

    def failures(self) -> list[str]:
        failures = [self.stack_error] if self.stack_error else []
        if self.stack and self.stack.status != "CREATE_COMPLETE":
            failures.append(f"stack {self.stack.status}: {self.stack.reason}")
        failures += self.comparison.failures() if self.comparison else []
        failures += self.lint_result.failures() if self.lint_result else []
        return failures

    @property
    def passed(self) -> bool:
        return not self.failures()


def _referencing_skipped(template: dict) -> list[str]:
    """Resources moto would create that reference one it skips: the likely cause of a failed create_stack."""
    resources = template["Resources"]
    skipped = [lid for lid, r in resources.items() if r["Type"] in SKIPPED_TYPES]
    return [
        f"{lid} -> {', '.join(sorted(refs))}"
        for lid, r in resources.items()
        if r["Type"] not in SKIPPED_TYPES and (refs := prepare.references(r.get("Properties", {}), skipped))
    ]


def _prepare(result: Rehearsal) -> dict:
    """The translated template as moto gets it (prepare.py; gaps.REWRITES); fills in what was changed."""
    conditions = result.translated.get("Resources", {})
    result.expected, left_out = prepare.resolve_conditions(result.translated)
    result.left_out = {lid: conditions[lid]["Condition"] for lid in left_out}
    result.expected, stand_ins = prepare.stand_in_references(result.expected, STAND_INS)
    result.stand_ins = list(stand_ins)
    deployed, result.routes_added = prepare.api_body_to_resources(result.expected)
    deployed, result.named = prepare.lowercase_names(deployed, LOWERCASE_NAMES, STACK_NAME)
    return prepare.dependency_order(deployed)


def _create(result: Rehearsal, endpoint: str, deployed: dict) -> None:
    try:
        result.stack = create_stack(endpoint, deployed)
    except (ClientError, BotoCoreError, TimeoutError) as error:
        suspects = _referencing_skipped(deployed)
        result.stack_error = f"create_stack failed: {str(error)[:1000]}" + (
            f"\nresources that reference one moto does not create: {'; '.join(suspects)}" if suspects else ""
        )


@contextmanager
def rehearsal(template: Path, out_dir: Path, run_lint: bool = True) -> Iterator[Rehearsal]:
    """The whole rehearsal, yielded once finished while its moto still runs (`result.live` reads it);
    moto stops on exit. Writes translated.json and deployed.json (what moto got) to `out_dir`."""
    result = Rehearsal(template)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = step = time.monotonic()

    def timed(name: str) -> None:
        nonlocal step
        now = time.monotonic()
        result.timings[name] = now - step
        step = now

    moto = start_moto()
    linting = None
    try:
        timed("start moto")
        result.live = Live(moto.url)
        with tempfile.TemporaryDirectory() as tmp:
            packaged = package(template, moto.url, Path(tmp) / "packaged.yaml")
            result.artefacts = len(result.live("s3").list_objects_v2(Bucket=ARTIFACT_BUCKET).get("Contents", []))
            timed("sam package")
            result.translated = translate(load_template(packaged))
        translated_path = out_dir / "translated.json"
        translated_path.write_text(json.dumps(result.translated, indent=1))
        if run_lint:  # about 10 s of one core, beside the steps below
            linting, lint_started = lint.start(translated_path), time.monotonic()
        try:
            deployed = _prepare(result)
            (out_dir / "deployed.json").write_text(json.dumps(deployed, indent=1))
        except ValueError as error:  # a dependency cycle, a generated logical id already taken
            result.stack_error, deployed = f"preparing the template for moto failed: {error}", None
        timed("translate and prepare")
        if deployed is not None:
            _create(result, moto.url, deployed)
        timed("create_stack")
        if result.stack and result.stack.status == "CREATE_COMPLETE":
            result.comparison = compare(result.expected, result.stack, result.live)
        timed("compare")
        if linting is not None:
            result.lint_result = lint.finish(linting, translated_path)
            linting = None
            result.timings["cfn-lint (beside the steps above)"] = time.monotonic() - lint_started
        result.timings["total"] = time.monotonic() - started
        yield result
    finally:
        if linting is not None:  # an earlier step failed
            linting.kill()
            linting.wait()
        moto.stop()


def rehearse(template: Path, out_dir: Path, run_lint: bool = True) -> Rehearsal:
    with rehearsal(template, out_dir, run_lint) as result:
        return result
