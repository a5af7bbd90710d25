"""What a function's interpreter sees on Lambda, rebuilt from the dev venv without a build.

On Lambda a python3.12 function imports from its own folder (/var/task), the python/ folder of
each layer (/opt/python) and the runtime's own packages (/var/runtime: boto3 and its closure).
The dev venv holds much more (awscrt, pyOpenSSL, SAM CLI, ...), and some of it changes what
boto3 imports. `lambda_sys_path` gives the same search path for a function of template.yaml:
its folder, its source layers' python/ folders and one site-packages of symlinks to the dev
venv's copies of exactly the distributions its makefile layers pin, plus the runtime's boto3.

Used by tests/unit/test_function_layers.py (each handler imports with only its layers) and by
the benchmarks' cold starts (scripts/bench.py, scripts/bench_images.py), which run the
handler in `python -S` with this path, as Lambda would.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from samcli.yamlhelper import yaml_parse

from scripts.local_runner.api import yaml_safe_loader_preserved

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

with yaml_safe_loader_preserved():  # SAM's parser would change yaml.safe_load for everyone else
    RESOURCES = yaml_parse(TEMPLATE_PATH.read_text())["Resources"]
FUNCTIONS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
LAYERS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::LayerVersion"}
MAKEFILE_LAYERS = sorted(name for name, r in LAYERS.items() if r.get("Metadata", {}).get("BuildMethod") == "makefile")
# The Lambda python3.12 runtime's own packages (/var/runtime): boto3 and its closure, and snapshot-restore-py
# (SnapStart's runtime hooks, in every Python managed runtime). No layer ships them.
LAMBDA_RUNTIME_DISTRIBUTIONS = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "urllib3",
    "snapshot-restore-py",
)


def pinned_versions(requirements_text: str) -> dict[str, str]:
    """{normalised name: version} of a requirements file of `name==version` lines."""
    pins = {}
    for line in requirements_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def function_layers(function: str) -> list[str]:
    return [ref["Ref"] for ref in FUNCTIONS[function]["Properties"].get("Layers", [])]


def layer_dir(layer: str) -> Path:
    return REPO_ROOT / LAYERS[layer]["Properties"]["ContentUri"]


def layer_pins(layer: str) -> dict[str, str]:
    """The distributions a makefile layer installs ({} for a layer of source files)."""
    requirements = layer_dir(layer) / "requirements.txt"
    return pinned_versions(requirements.read_text()) if layer in MAKEFILE_LAYERS else {}


def top_level_entries(distribution: str) -> set[str]:
    """What a distribution puts in site-packages: its modules, packages and .dist-info folder."""
    files = importlib.metadata.distribution(distribution).files or []
    return {file.parts[0] for file in files if file.parts[0] not in ("..", "__pycache__")}


def top_level_bytecode(distribution: str) -> set[str]:
    """The bytecode of a distribution's top-level modules (six.py), in site-packages/__pycache__."""
    files = importlib.metadata.distribution(distribution).files or []
    return {file.name for file in files if file.parts[0] == "__pycache__" and len(file.parts) == 2}


def lambda_site(distributions, directory: Path) -> Path:
    """A site-packages of symlinks to the dev venv's copies of exactly these distributions, their bytecode
    included (as a layer built with its bytecode ships it; PYTHONDONTWRITEBYTECODE would otherwise make every
    fresh interpreter compile the top-level modules again)."""
    (directory / "__pycache__").mkdir(parents=True, exist_ok=True)
    for distribution in distributions:
        root = Path(importlib.metadata.distribution(distribution).locate_file(""))
        bytecode = [f"__pycache__/{name}" for name in top_level_bytecode(distribution)]
        for entry in [*top_level_entries(distribution), *bytecode]:
            if not (directory / entry).exists() and (root / entry).exists():
                (directory / entry).symlink_to(root / entry)
    return directory


def lambda_sys_path(function: str, workdir: Path, layers: list[str] | None = None) -> list[str]:
    """The function's folder, its source layers and a site of its pinned and runtime packages (in `workdir`)."""
    layers = function_layers(function) if layers is None else layers
    distributions = [name for layer in layers for name in layer_pins(layer)] + list(LAMBDA_RUNTIME_DISTRIBUTIONS)
    source_layers = [str(layer_dir(layer) / "python") for layer in layers if (layer_dir(layer) / "python").is_dir()]
    site = lambda_site(distributions, workdir / "site")
    return [str(REPO_ROOT / FUNCTIONS[function]["Properties"]["CodeUri"]), *source_layers, str(site)]
