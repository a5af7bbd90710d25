"""The rehearsal's report (Markdown): results, checks per resource, Outputs, what is not proved, cfn-lint."""

from __future__ import annotations

from collections import Counter

from scripts.rehearse.compare import MISSING, Check
from scripts.rehearse.gaps import ATTRIBUTES, IGNORED_PROPERTIES, REWRITES, SKIPPED_TYPES
from scripts.rehearse.rehearsal import Rehearsal


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows] + [""]


def _result(checks: list[Check]) -> str:
    counts = Counter(check.status for check in checks)
    if counts["FAIL"]:
        return f"FAIL ({counts['FAIL']})"
    return "pass" + (f" ({counts['not checked']} not checked)" if counts["not checked"] else "")


def _moto_version() -> str:
    import moto

    return moto.__version__


def summary_rows(r: Rehearsal) -> list[list[object]]:
    seconds = r.timings
    rows = [
        ["start moto", "a fresh server on localhost", seconds.get("start moto")],
        ["sam package (into moto's S3)", f"{r.artefacts} artefacts uploaded", seconds.get("sam package")],
        [
            "translate (samtranslator) and prepare",
            f"{len(r.translated.get('Resources', {}))} resources; {len(r.left_out)} left out by conditions",
            seconds.get("translate and prepare"),
        ],
    ]
    if r.stack:
        c = r.comparison
        created = len(c.resources) if c else "?"
        skipped = len(c.skipped) if c else "?"
        result = f"{r.stack.status}: {created} created, {skipped} skipped by moto (listed)"
        rows.append(["create_stack", result, seconds.get("create_stack")])
    if r.comparison:
        checks = r.comparison.checks()
        counts = Counter(check.status for check in checks)
        rows.append(
            [
                "compare",
                f"{len(checks)} checks: {counts['pass']} pass, {counts['FAIL']} fail, "
                f"{counts['not checked']} not checked",
                seconds.get("compare"),
            ]
        )
        outputs = Counter(check.status for check in r.comparison.outputs.values())
        rows.append(
            [
                "Outputs",
                f"{outputs['pass']} resolved as expected, {outputs['FAIL']} fail, "
                f"{outputs['not checked']} depend on skipped resources",
                None,
            ]
        )
    if r.lint_result:
        versions = " + ".join(f"{k} {v}" for k, v in r.lint_result.versions.items())
        levels = Counter(f.level for f in r.lint_result.findings)
        accepted = sum(1 for f in r.lint_result.findings if f.accepted)
        rows.append(
            [
                versions,
                f"{len(r.lint_result.errors())} errors ({accepted} accepted), {levels['Warning']} warnings",
                seconds.get("cfn-lint (beside the steps above)"),
            ]
        )
    rows.append(["total", "", seconds.get("total")])
    return [[step, result, f"{s:.1f}" if s is not None else ""] for step, result, s in rows]


def render(r: Rehearsal) -> str:
    failures = r.failures()
    lines = [
        f"# Deploy rehearsal of {r.template.name} on moto {_moto_version()}",
        "",
        "Research and education only - NOT FOR CLINICAL USE. `make rehearse` (scripts/rehearse/); README, "
        '"Deploy rehearsal".',
        "",
        f"**{'PASS' if not failures else f'FAIL ({len(failures)})'}**",
        "",
        *_table(["step", "result", "seconds"], summary_rows(r)),
    ]
    if failures:
        lines += ["## Failures", "", *[f"- {_cell(f)}" for f in failures], ""]
    c = r.comparison
    if c:
        lines += ["## Checks per resource", ""]
        rows = []
        for resource in c.resources.values():
            counts = Counter(check.prop for check in resource.checks)  # a property checked part by part: (n)
            props = [f"{prop} ({n})" if n > 1 else prop for prop, n in counts.items()]
            result = _result(resource.checks) if resource.checks else "nothing to compare"
            rows.append([resource.logical_id, resource.type, ", ".join(props) or "-", result])
        lines += _table(["resource", "type", "compared", "result"], rows)
        routes = sum(len(ids) for ids in r.routes_added.values())
        lines += [
            "Body (n): each route (path and method) of the REST API's OpenAPI body against moto's resources, methods "
            f"and integrations ({routes} Resource and Method resources written from it). Environment (n): each "
            "variable; Policies, Targets, Tags (n): each by name.",
            "",
            "## Outputs",
            "",
            *_table(
                ["output", "value", "result"],
                [
                    [key, check.actual if check.actual != MISSING else "(none)", _output_result(check)]
                    for key, check in c.outputs.items()
                ],
            ),
        ]
    lines += not_proved(r)
    lines += lint_section(r)
    return "\n".join(lines)


def _output_result(check: Check) -> str:
    if check.status == "not checked":
        return f"not checked: depends on {', '.join(check.depends_on)}"
    return check.status


def not_proved(r: Rehearsal) -> list[str]:
    """The one list (scripts/rehearse/gaps.py), with what of it this template has."""
    types = {}
    for logical_id, resource in r.expected.get("Resources", {}).items():
        types.setdefault(resource["Type"], []).append(logical_id)
    lines = [
        "## What the rehearsal does not prove",
        "",
        "From scripts/rehearse/gaps.py. moto does not create these resource types:",
        "",
        *_table(
            ["type", "in this template", "why"],
            [[t, ", ".join(types.get(t, [])) or "-", why] for t, why in SKIPPED_TYPES.items()],
        ),
        "Properties of created resources that are not compared:",
        "",
        *_table(
            ["type", "property", "why"],
            [[t, prop, why] for t, props in IGNORED_PROPERTIES.items() for prop, why in props.items()],
        ),
    ]
    c = r.comparison
    dependent = [check for check in c.checks() if check.status == "not checked"] if c else []
    if dependent:
        lines += [
            "Not compared because they reference a resource moto does not create:",
            "",
            *_table(
                ["resource", "property", "references"],
                [[d.logical_id, f"{d.prop} {d.detail}".strip(), ", ".join(d.depends_on)] for d in dependent],
            ),
        ]
    lines += ["Resource attributes:", "", *_table(["attribute", "why"], [[a, why] for a, why in ATTRIBUTES.items()])]
    lines += [
        "What the rehearsal changes before moto gets the template:",
        "",
        *_table(["what", "how"], [[what, how] for what, how in REWRITES.items()]),
    ]
    if r.left_out:
        lines += [
            "Left out by a false condition (default parameter values):",
            "",
            *_table(["resource", "condition"], [[lid, cond] for lid, cond in r.left_out.items()]),
        ]
    if r.stack and r.stack.blank_rows:
        lines += [f"moto lists {r.stack.blank_rows} resource row(s) without a logical id (the ones it skipped).", ""]
    return lines


def lint_section(r: Rehearsal) -> list[str]:
    result = r.lint_result
    if result is None:
        return ["## cfn-lint", "", "Not run (--no-lint).", ""]
    lines = ["## cfn-lint", "", "`" + " ".join(result.command) + "`", ""]
    if result.crashed:
        lines += [f"cfn-lint failed to run: {result.crashed}", ""]
    if result.findings:
        rows = [
            [f.level, f.rule, f.logical_id, f.message, f.accepted and f"accepted: {f.accepted}"]
            for f in sorted(result.findings, key=lambda f: (f.level, f.rule, f.logical_id))
        ]
        lines += _table(["level", "rule", "resource", "message", "note"], rows)
    else:
        lines += ["No findings.", ""]
    return lines
