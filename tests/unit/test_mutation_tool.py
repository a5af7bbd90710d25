"""make mutation's own logic (scripts/mutation.py): the staging folder mutmut runs in, the
score (equivalent mutants left out) and the README table. mutmut itself is not run here."""

import tomllib
from collections import Counter

import pytest

from scripts import mutation


def test_toml_lists_survive_quotes_and_backslashes():
    items = ["plain", 'with "quotes"', "back\\slash"]
    assert tomllib.loads(f"x = {mutation.toml_list(items)}")["x"] == items


def test_the_stage_copies_the_package_links_the_project_and_configures_mutmut(tmp_path, monkeypatch):
    stage = tmp_path / "stage"
    monkeypatch.setattr(mutation, "STAGE", stage)
    mutation.stage(["domain.tabular", "adapters.model_store"])
    staged = stage / "src" / "med_classifier" / "domain" / "tabular.py"
    assert staged.read_text() == (mutation.PACKAGE / "domain" / "tabular.py").read_text()
    assert not staged.is_symlink()
    assert (stage / "tests").resolve() == mutation.REPO / "tests" and (stage / "template.yaml").is_symlink()
    assert not (stage / ".venv").exists() and not (stage / "docs").exists()
    config = tomllib.loads((stage / "pyproject.toml").read_text())
    mutmut = config["tool"]["mutmut"]
    assert mutmut["only_mutate"] == [
        "src/med_classifier/domain/tabular.py",
        "src/med_classifier/adapters/model_store.py",
    ]
    assert mutmut["pytest_add_cli_args_test_selection"] == [
        "tests/unit",
        "tests/integration",
        "-m",
        "not slow",
        "--ignore=tests/unit/test_mutation_tool.py",
    ]
    assert "tests" not in mutmut["also_copy"] and "training" in mutmut["also_copy"]
    assert "slow: " in " ".join(config["tool"]["pytest"]["ini_options"]["markers"])


def test_the_score_leaves_equivalent_mutants_out():
    result = mutation.ModuleResult(
        "tabular", Counter({"killed": 7, "timeout": 1, "survived": 2}), survivors=["a"], equivalent=["b"]
    )
    assert (result.total, result.killed) == (10, 8)
    assert result.score == pytest.approx(8 / 9)
    assert mutation.ModuleResult("empty").score == 1.0


def test_the_markdown_table_has_a_row_per_module_and_the_reasons():
    results = [mutation.ModuleResult("tabular", Counter({"killed": 9, "survived": 1}), equivalent=["m1"])]
    table = mutation.markdown(results, {"m1": "same result"})
    assert "| `tabular` | 10 | 9 | 1 | 0 | 100.0% |" in table
    assert "- `m1`: same result" in table


def test_only_entries_of_the_modules_run_can_be_stale(capsys):
    results = [mutation.ModuleResult("domain.tabular", Counter({"killed": 3}))]
    equivalents = {
        "med_classifier.domain.tabular.x_rows__mutmut_1": "gone",
        "med_classifier.domain.preprocessing.x_decode__mutmut_9": "not run this time",
    }
    mutation.print_report(results, equivalents, show_diffs=False)
    stale = [line for line in capsys.readouterr().out.splitlines() if line.startswith("STALE")]
    assert stale == [
        "STALE entry in mutation_equivalents.toml (no longer a surviving mutant): "
        "med_classifier.domain.tabular.x_rows__mutmut_1"
    ]
