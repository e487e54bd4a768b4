"""The package's functions stay short (issue 18): one over MAX_LINES lines must say why.

A long function is allowed only with a comment line `# Long because: ...` inside it giving the
reason (a declarative table, one SQL statement...); otherwise it is split into named steps.
"""

from __future__ import annotations

import ast

from tests.conftest import REPO

MAX_LINES = 60
REASON = "# Long because:"


def long_functions() -> list[str]:
    """Every function of pipeline/ longer than MAX_LINES (def to last line) without a REASON comment."""
    found = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                source = lines[node.lineno - 1:node.end_lineno]
                if length > MAX_LINES and not any(line.strip().startswith(REASON) for line in source):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_long_without_saying_why() -> None:
    found = long_functions()
    assert not found, f"functions over {MAX_LINES} lines without a '{REASON}' comment:\n" + "\n".join(found)
