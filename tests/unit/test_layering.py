"""The shared package's folders are its layers: domain code imports no AWS SDK, no
Powertools and no adapter or API module; adapters import no API module or Powertools.
An AST check over every module, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "shared" / "python" / "med_classifier"
FORBIDDEN = {
    "domain": (
        "boto3",
        "botocore",
        "aws_lambda_powertools",
        "med_classifier.adapters",
        "med_classifier.api",
        "med_classifier.settings",
        "med_classifier.services",
    ),
    "adapters": ("aws_lambda_powertools", "med_classifier.api", "med_classifier.settings", "med_classifier.services"),
    "api": ("boto3", "botocore", "med_classifier.adapters", "med_classifier.services"),
}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in sorted(imported_modules(path)):
            if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[layer]):
                found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_it_may(layer):
    assert (PACKAGE / layer).is_dir()
    assert violations(layer) == []


def test_the_check_sees_relative_lazy_and_absolute_imports(tmp_path, monkeypatch):
    fake = tmp_path / "med_classifier"
    (fake / "domain").mkdir(parents=True)
    (fake / "domain" / "rules.py").write_text(
        "from ..adapters.model_store import ModelStore\n"
        "def later():\n    import boto3\n"
        "from aws_lambda_powertools.event_handler import Response\n"
        "from .manifest import Manifest\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    assert violations("domain") == [
        "domain/rules.py imports aws_lambda_powertools.event_handler",
        "domain/rules.py imports aws_lambda_powertools.event_handler.Response",
        "domain/rules.py imports boto3",
        "domain/rules.py imports med_classifier.adapters.model_store",
        "domain/rules.py imports med_classifier.adapters.model_store.ModelStore",
    ]


def test_no_module_outside_the_layers_but_the_settings_and_composition_root():
    # snapstart.py: the functions' SnapStart hooks, which reach adapters and the domain as services.py does.
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "services.py", "settings.py", "snapstart.py"]
