"""Function length rule of issue #15: one job per function, so no function runs long.

No function in `blinaetl/` is over 80 lines, none in `blinaetl/synth/` over 150. A function's
length is `node.end_lineno - node.lineno + 1` from `ast` (decorators not counted; its docstring,
comments and blank lines inside it counted; a nested function counts in its parent and is not
measured on its own; methods are measured like functions).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "blinaetl"

MAX_LINES = 80
MAX_LINES_SYNTH = 150


class LongFunction(NamedTuple):
    path: str
    name: str
    lines: int
    limit: int

    def __str__(self) -> str:
        return f"{self.path}: {self.name} is {self.lines} lines (limit {self.limit})"


def function_lengths(source: str) -> list[tuple[str, int]]:
    """(qualified name, length) of every outermost function or method in `source`."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                assert child.end_lineno is not None
                found.append((prefix + child.name, child.end_lineno - child.lineno + 1))
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def limit_for(relative: Path) -> int:
    """The limit of a file, given its path relative to the repository root."""
    return MAX_LINES_SYNTH if relative.parts[:2] == ("blinaetl", "synth") else MAX_LINES


def long_functions(package: Path = PACKAGE) -> list[LongFunction]:
    root = package.parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(root)
        limit = limit_for(relative)
        for name, lines in function_lengths(path.read_text(encoding="utf-8")):
            if lines > limit:
                offenders.append(LongFunction(relative.as_posix(), name, lines, limit))
    return offenders


def test_no_engine_function_is_over_its_limit() -> None:
    offenders = long_functions()
    for offender in offenders:
        print(offender)
    assert offenders == [], "split into one-job functions:\n" + "\n".join(map(str, offenders))


# the checker itself, on toy sources written for the purpose


def _function(name: str, lines: int) -> str:
    """Source of a function `lines` lines long: the def line, a docstring, then statements."""
    assert lines >= 2
    body = ['    """Docstring lines count."""'] + ["    x = 1"] * (lines - 2)
    return "\n".join([f"def {name}():", *body]) + "\n"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "blinaetl"


def test_length_counts_def_line_to_last_line_docstring_included() -> None:
    # def line + docstring + 3 statements = 5 lines
    assert function_lengths(_function("f", 5)) == [("f", 5)]


def test_nested_function_counts_in_its_parent_only() -> None:
    source = (
        "def outer():\n"  # 1
        '    """Doc."""\n'  # 2
        "    def inner():\n"  # 3
        "        return 1\n"  # 4
        "\n"  # 5 (blank line inside the function)
        "    return inner()\n"  # 6
    )
    assert function_lengths(source) == [("outer", 6)]


def test_methods_are_measured_with_their_class_name() -> None:
    source = (
        "class C:\n    def m(self):\n        return 1\n\n    async def a(self):\n        pass\n"
    )
    assert function_lengths(source) == [("C.m", 2), ("C.a", 2)]


def test_decorators_are_not_counted() -> None:
    source = "@staticmethod\n@other\ndef f():\n    return 1\n"
    assert function_lengths(source) == [("f", 2)]


def test_80_lines_pass_81_fail_outside_synth(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "blinaetl/__init__.py": "",
            "blinaetl/reports/study.py": _function("at_limit", 80) + _function("over", 81),
        },
    )
    assert long_functions(package) == [LongFunction("blinaetl/reports/study.py", "over", 81, 80)]


def test_150_lines_pass_151_fail_inside_synth(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "blinaetl/__init__.py": "",
            "blinaetl/synth/cohort.py": _function("at_limit", 150) + _function("over", 151),
            "blinaetl/synthetic_other.py": _function("not_synth", 81),
        },
    )
    assert sorted(long_functions(package)) == [
        LongFunction("blinaetl/synth/cohort.py", "over", 151, 150),
        LongFunction("blinaetl/synthetic_other.py", "not_synth", 81, 80),
    ]


def test_offender_message_names_file_function_and_length() -> None:
    offender = LongFunction("blinaetl/x.py", "f", 81, 80)
    assert str(offender) == "blinaetl/x.py: f is 81 lines (limit 80)"
