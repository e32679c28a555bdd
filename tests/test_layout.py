"""The house keeps its order: no import runs from a lower wing into a higher one (docs/design.md, "Wings")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cvae_bench"

#: Floors of docs/design.md's table: a module may import its own floor's and lower floors' modules only.
FLOORS: dict[str, int] = {
    "core": 0,  # errors, defaults, records, statistics, versions, tables, tuning: what every wing shares
    "__version__": 0,  # `from cvae_bench import __version__`: the package's face
    "models": 1,
    "backends": 2,
    "conformance": 3,
    "runtime": 4,
    "data": 5,
    "training": 6,
    "onnx": 6,
    "serving": 7,
    "bench": 8,
    "report": 9,  # reads result files only: never the runners below it
    "sweep": 9,  # beside report: runs cells through training/bench, writes its summary
    "testing": 10,
    "cli": 11,  # the command line: the group, options generated from the records, output, one module per family
    "__main__": 12,
    "entry": 12,  # the console script: signal handlers first, then the CLI
}
#: Siblings on one floor that must not import each other.
SIBLINGS = {("training", "onnx"), ("onnx", "training")}
#: Stands apart: imports onnxruntime and NumPy only (any wing may use it).
STANDALONE = {"deploy"}


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cvae_bench" else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every cvae_bench module imported anywhere in `path` (top level and inside functions)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "cvae_bench" else [f"cvae_bench.{a.name}" for a in node.names]
            out += [(node.lineno, n) for n in names if n.startswith("cvae_bench")]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("cvae_bench")]
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_wing_has_a_floor() -> None:
    wings = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES} - {"__init__"}
    assert wings - set(FLOORS) - STANDALONE == set(), "a new wing needs its floor here and in docs/design.md"
    assert "deploy" in wings


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_upwards(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own == "__init__":
        own = "core"  # the package's face re-exports the foundation only
    bad = []
    for line, module in _imports(path):
        target = _wing(module)
        if not target or target == own:
            continue
        if own in STANDALONE:
            bad.append(f"line {line}: {module} (deploy.py imports onnxruntime and NumPy only)")
        elif target not in STANDALONE and (FLOORS[target] > FLOORS[own] or (own, target) in SIBLINGS):
            bad.append(f"line {line}: {own} (floor {FLOORS[own]}) imports {module} (floor {FLOORS.get(target)})")
    assert not bad, "\n".join(bad)


def test_jobs_are_named_by_reference_not_by_strings() -> None:
    """A worker job is the function itself; "module:function" strings hide the flow from mypy and readers."""
    offenders = [
        f"{p.relative_to(PACKAGE)}:{n.lineno}"
        for p in MODULES
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.Constant) and n.value == "func"
    ]
    assert not offenders
