"""Functions stay short enough to read as named steps: none in the product's code
(layers/, functions/, training/, scripts/) is longer than 60 lines. Tests are scenarios
and are left out."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CODE = ("layers", "functions", "training", "scripts")
MAX_LINES = 60


def long_functions(roots=CODE, repo: Path = REPO) -> list[str]:
    found = []
    for root in roots:
        for path in sorted((repo / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_LINES:
                        found.append(f"{path.relative_to(repo)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_sixty_lines():
    assert long_functions() == []


def test_the_check_counts_from_def_to_the_last_line(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 1))
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "m.py").write_text(f"def fits():\n{body}\n\n\ndef too_long():\n{body}\n    x = 0\n")
    assert long_functions(("code",), tmp_path) == [f"code/m.py:{MAX_LINES + 3} too_long ({MAX_LINES + 1} lines)"]
