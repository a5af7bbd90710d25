"""Report unzipped sizes of what `sam build` produced, against Lambda's 250 MB limit.

Lambda limits a function's unzipped code plus all its layers to 250 MB
(262,144,000 bytes). For every layer and function in the built template this
prints its unzipped size and largest top-level entries, then each function's
layers and its total including them, then that last part as a Markdown table
(README, "Benchmark and sizes").

It also checks that native code in each artefact is for the architecture SAM
built it for (.aws-sam/build.toml): SAM does not pass the architecture to the
layer's Makefile, so `sam build --parameter-overrides Architecture=arm64` without
LAMBDA_ARCHITECTURE=arm64 would otherwise ship an x86_64 layer unnoticed.

Exit status: 0 when every function fits and every artefact's architecture matches,
1 otherwise.

Usage: python scripts/layer_size.py [--build-dir .aws-sam/build] [--top 10]
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from samcli.yamlhelper import yaml_parse

LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000  # "250 MB" = 250 MiB
MIB = 1024 * 1024
ELF_MAGIC = b"\x7fELF"
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}  # e_machine values Lambda runs


@dataclass
class Artefact:
    """A built layer or function directory."""

    name: str
    kind: str  # "layer" or "function"
    path: Path
    size_bytes: int = 0
    entries: list[tuple[str, int]] = field(default_factory=list)
    native_architectures: set[str] = field(default_factory=set)
    built_architecture: str | None = None


@dataclass
class FunctionTotal:
    """A function's unzipped code plus the layers it carries."""

    function: str
    layers: list[str]
    code_bytes: int
    total_bytes: int
    unbuilt_layers: list[str]  # referenced, but not built here (ARNs): not counted

    @property
    def spare_bytes(self) -> int:
        return LAMBDA_UNZIPPED_LIMIT_BYTES - self.total_bytes


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def elf_architecture(path: Path) -> str | None:
    with path.open("rb") as f:
        header = f.read(20)
    if len(header) < 20 or not header.startswith(ELF_MAGIC):
        return None
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"e_machine={machine:#x}")


def native_architectures(path: Path) -> set[str]:
    # Extension modules (*.so) and the libraries bundled with wheels (*.so.N); the ELF magic decides.
    shared_objects = (f for f in path.rglob("*.so*") if f.is_file())
    return {arch for f in shared_objects if (arch := elf_architecture(f))}


def top_level_entries(path: Path) -> list[tuple[str, int]]:
    # A layer's code lives under python/ (what Lambda puts on sys.path from /opt).
    root = path / "python" if (path / "python").is_dir() else path
    prefix = "python/" if root != path else ""
    entries = [(prefix + child.name, tree_size(child)) for child in root.iterdir()]
    return sorted(entries, key=lambda entry: entry[1], reverse=True)


def built_architectures(build_dir: Path) -> dict[str, str]:
    """Architecture per layer/function name, from SAM's build graph."""
    build_toml = build_dir.parent / "build.toml"
    if not build_toml.is_file():
        return {}
    graph = tomllib.loads(build_toml.read_text())
    architectures: dict[str, str] = {}
    for definition in graph.get("layer_build_definitions", {}).values():
        architectures[definition["layer_name"]] = definition["architecture"]
    for definition in graph.get("function_build_definitions", {}).values():
        for function in definition.get("functions", []):
            architectures[function] = definition["architecture"]
    return architectures


def load_artefacts(build_dir: Path) -> tuple[dict[str, Artefact], dict[str, list[str]]]:
    """Layers and functions of the built template, and each function's layer references."""
    template = yaml_parse((build_dir / "template.yaml").read_text())
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    architectures = built_architectures(build_dir)
    artefacts: dict[str, Artefact] = {}
    function_layers: dict[str, list[str]] = {}
    for name, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            kind, uri = "layer", properties.get("ContentUri")
        elif resource.get("Type") == "AWS::Serverless::Function":
            kind, uri = "function", properties.get("CodeUri")
            function_layers[name] = [layer_name(ref) for ref in global_layers + properties.get("Layers", [])]
        else:
            continue
        if not isinstance(uri, str):  # image functions, S3 locations: nothing local to measure
            continue
        path = (build_dir / uri).resolve()
        artefacts[name] = Artefact(
            name=name,
            kind=kind,
            path=path,
            size_bytes=tree_size(path),
            entries=top_level_entries(path),
            native_architectures=native_architectures(path),
            built_architecture=architectures.get(name),
        )
    return artefacts, function_layers


def layer_name(reference: object) -> str:
    """Logical id for `!Ref Layer`; anything else (an ARN) is shown as given."""
    if isinstance(reference, dict) and "Ref" in reference:
        return reference["Ref"]
    return str(reference)


def mib(size_bytes: int) -> str:
    return f"{size_bytes / MIB:7.1f} MiB"


def architecture_problem(artefact: Artefact) -> str | None:
    if artefact.built_architecture is None or not artefact.native_architectures:
        return None
    if artefact.native_architectures != {artefact.built_architecture}:
        found = ", ".join(sorted(artefact.native_architectures))
        return f"native code is {found}, but SAM built it for {artefact.built_architecture}"
    return None


def function_totals(artefacts: dict[str, Artefact], function_layers: dict[str, list[str]]) -> list[FunctionTotal]:
    totals = []
    for function, layers in function_layers.items():
        if function not in artefacts:
            continue
        built = [layer for layer in layers if layer in artefacts]
        code_bytes = artefacts[function].size_bytes
        total_bytes = code_bytes + sum(artefacts[layer].size_bytes for layer in built)
        unbuilt = [layer for layer in layers if layer not in artefacts]
        totals.append(FunctionTotal(function, layers, code_bytes, total_bytes, unbuilt))
    return totals


def print_artefacts(artefacts: dict[str, Artefact], top: int) -> bool:
    ok = True
    for kind in ("layer", "function"):
        print(f"\n{kind.capitalize()}s")
        for artefact in (a for a in artefacts.values() if a.kind == kind):
            architecture = ", ".join(sorted(artefact.native_architectures)) or "no native code"
            print(f"  {artefact.name:<28}{mib(artefact.size_bytes)}   [{architecture}]  {artefact.path}")
            for entry, size_bytes in artefact.entries[:top]:
                print(f"      {entry:<40}{mib(size_bytes)}")
            if problem := architecture_problem(artefact):
                print(f"  ERROR {artefact.name}: {problem}")
                ok = False
    return ok


def print_totals(totals: list[FunctionTotal]) -> None:
    print("\nFunction totals (code + layers)")
    for total in totals:
        verdict = "OK" if total.spare_bytes >= 0 else "OVER THE LIMIT"
        print(
            f"  {total.function:<28}{mib(total.total_bytes)}   {total.total_bytes / LAMBDA_UNZIPPED_LIMIT_BYTES:6.1%}"
            f" of the limit, {mib(total.spare_bytes).strip()} to spare  {verdict}"
        )
        print(f"      code {mib(total.code_bytes).strip()}; layers: {' + '.join(total.layers) or 'none'}")
        for layer in total.unbuilt_layers:
            print(f"  note: {total.function} uses layer {layer}, which is not built here: not counted")


def markdown_table(totals: list[FunctionTotal], artefacts: dict[str, Artefact]) -> str:
    """Each function's layers and unzipped size (code + layers), as the README shows them."""
    limit = LAMBDA_UNZIPPED_LIMIT_BYTES / MIB
    lines = [f"| function | layers (unzipped MiB) | code + layers, MiB (limit {limit:.0f}) |", "| --- | --- | ---: |"]
    for total in totals:
        layers = ", ".join(
            f"`{layer}` {artefacts[layer].size_bytes / MIB:.1f}" if layer in artefacts else f"`{layer}` (not built)"
            for layer in total.layers
        )
        lines.append(f"| `{total.function}` | {layers or 'none'} | **{total.total_bytes / MIB:.1f}** |")
    return "\n".join(lines)


def report(build_dir: Path, top: int) -> bool:
    artefacts, function_layers = load_artefacts(build_dir)
    limit = mib(LAMBDA_UNZIPPED_LIMIT_BYTES).strip()
    print(f"Unzipped sizes under {build_dir} (Lambda limit, function + layers: {limit})")
    ok = print_artefacts(artefacts, top)
    totals = function_totals(artefacts, function_layers)
    print_totals(totals)
    print("\n" + markdown_table(totals, artefacts))
    return ok and all(total.spare_bytes >= 0 for total in totals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=Path(".aws-sam/build"), help="sam build's output directory")
    parser.add_argument("--top", type=int, default=10, help="largest entries to list per artefact")
    args = parser.parse_args()
    if not (args.build_dir / "template.yaml").is_file():
        print(f"{args.build_dir}/template.yaml not found: run `sam build` first", file=sys.stderr)
        return 1
    return 0 if report(args.build_dir.resolve(), args.top) else 1


if __name__ == "__main__":
    sys.exit(main())
