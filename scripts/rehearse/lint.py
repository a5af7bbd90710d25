"""cfn-lint with the cfn-lint-serverless rules on the translated template (what CloudFormation receives).

The serverless rules' errors that this design accepts are listed below, one per finding (rule id and
logical id), with the reason; each must still occur (a stale entry fails the rehearsal), and any other
error fails it. Warnings are reported, not failed on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SERVERLESS_RULES = "cfn_lint_serverless.rules"

# (rule id, logical id) -> why the finding stands.
ACCEPTED: dict[tuple[str, str], str] = {
    ("ES6000", "UploadDeadLetterQueue"): (
        "a dead-letter queue itself (UploadQueue's): its messages wait for a person; redriving it would need a "
        "third queue"
    ),
    ("ES6000", "JobStateDeadLetterQueue"): (
        "a dead-letter queue itself (the job-state rules' and EventInvokeConfig's); the reconciler frees the "
        "models meanwhile"
    ),
    ("ES7000", "AlarmEmailSubscription"): (
        "the optional email subscription (AlarmEmail): an alarm mail kept in a queue would be read by no one"
    ),
    ("ES1001", "UploadCounterFunctionUploadQueue"): (
        "an SQS event source: Lambda has OnFailure destinations for stream and Kafka sources only; failed "
        "upload messages go to UploadDeadLetterQueue through UploadQueue's redrive policy"
    ),
    ("ES4000", "ReconcilerFunctionSchedule"): (
        "a missed reconciler run is redone by the next one (ReconcileSchedule) and its event carries nothing "
        "(ReconcilerFunction's checkov CKV_AWS_116 skip)"
    ),
    ("ES1007", "ReconcilerFunctionSchedulePermission"): "the same schedule: a failed run needs no destination",
    ("ES4000", "DriftMonitorFunctionSchedule"): (
        "a missed drift run is redone by the next one (DriftSchedule), which recomputes every report, and its "
        "event carries nothing (DriftMonitorFunction's checkov CKV_AWS_116 skip)"
    ),
    ("ES1007", "DriftMonitorFunctionSchedulePermission"): "the same schedule: a failed run needs no destination",
}


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def command(template: Path) -> list[str]:
    return [_tool("cfn-lint"), "--format", "json", "--append-rules", SERVERLESS_RULES, "--", str(template)]


def start(template: Path) -> subprocess.Popen:
    """cfn-lint in the background (about 10 s): the rehearsal goes on meanwhile."""
    return subprocess.Popen(command(template), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@dataclass
class Finding:
    rule: str
    level: str  # Error, Warning, Informational
    logical_id: str
    message: str
    accepted: str = ""  # the reason, when ACCEPTED lists it


@dataclass
class LintResult:
    command: list[str]
    versions: dict[str, str]
    findings: list[Finding] = field(default_factory=list)
    stale: list[tuple[str, str]] = field(default_factory=list)  # ACCEPTED entries that matched nothing
    crashed: str = ""  # cfn-lint's stderr when it produced no findings list

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "Error" and not f.accepted]

    def failures(self) -> list[str]:
        failures = [f"cfn-lint could not run: {self.crashed}"] if self.crashed else []
        failures += [f"cfn-lint {f.rule} {f.logical_id}: {f.message}" for f in self.errors()]
        failures += [
            f"cfn-lint: accepted {rule} {lid} no longer occurs (remove it from ACCEPTED)" for rule, lid in self.stale
        ]
        return failures


def versions() -> dict[str, str]:
    found = {}
    for package in ("cfn-lint", "cfn-lint-serverless"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def parse(output: str, accepted: dict[tuple[str, str], str] | None = None) -> tuple[list[Finding], list]:
    """cfn-lint's JSON findings, each marked with its ACCEPTED reason; and the entries nothing matched."""
    accepted = ACCEPTED if accepted is None else accepted
    findings = []
    for item in json.loads(output):
        path = item.get("Location", {}).get("Path") or []
        logical_id = path[1] if len(path) > 1 and path[0] == "Resources" else ""
        rule = item["Rule"]["Id"]
        findings.append(Finding(rule, item["Level"], logical_id, item["Message"], accepted.get((rule, logical_id), "")))
    matched = {(f.rule, f.logical_id) for f in findings if f.level == "Error"}
    return findings, [key for key in accepted if key not in matched]


def finish(process: subprocess.Popen, template: Path, timeout: float = 300.0) -> LintResult:
    stdout, stderr = process.communicate(timeout=timeout)
    result = LintResult(command(template), versions())
    try:
        result.findings, result.stale = parse(stdout or "[]")
    except (ValueError, KeyError):
        result.crashed = (stderr or stdout)[-2000:]
    if process.returncode & 1:  # cfn-lint's exit code: 1 = it failed to run, 2/4/8 = errors/warnings/infos
        result.crashed = result.crashed or stderr[-2000:]
    return result
