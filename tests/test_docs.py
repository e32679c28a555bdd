"""The documentation: the README's results are the committed bench.json's, and the site builds with no broken link."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from cvae_bench.bench.document import BenchDocument
from cvae_bench.bench.results_table import BEGIN, END, main, render, splice
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.runtime.files import read_json
from cvae_bench.testing.support import require_or_skip

ROOT = Path(__file__).resolve().parents[1]
BENCH_JSON = ROOT / "docs" / "results" / "bench.json"


def _committed() -> BenchDocument:
    return BenchDocument.from_json(read_json(BENCH_JSON))


def test_the_readme_results_are_the_committed_bench_json() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)].strip("\n")
    assert block == render(_committed()), "README's results differ from docs/results/bench.json: run `make results`"


def test_the_table_shows_every_entry_with_its_interval_and_the_command() -> None:
    doc = _committed()
    block = render(doc)
    rows = [line for line in block.splitlines() if line.startswith("| ") and "backend" not in line]
    contestants = [e for e in doc.benchmarks if e.group == "train-step" and not e.params.get("aa_twin")]
    assert len(rows) == len(contestants) and not any("A/A" in row for row in rows)
    assert all(" [" in row for row in rows)  # every row carries its 95 % interval
    assert doc.cvae_bench.command in block and "A/A self-check" in block


def test_splice_replaces_only_the_block_and_refuses_a_readme_without_markers(tmp_path: Path) -> None:
    text = f"before\n{BEGIN}\nold\n{END}\nafter\n"
    assert splice(text, "new") == f"before\n{BEGIN}\nnew\n{END}\nafter\n"
    with pytest.raises(CvaeBenchError, match="markers"):
        splice("no markers here", "new")
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert main([str(BENCH_JSON), str(readme)]) == 0
    assert render(_committed()) in readme.read_text() and readme.read_text().startswith("before\n")
    assert main([str(tmp_path / "missing.json"), str(readme)]) == 1


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a link to a missing page or anchor fails it."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        require_or_skip("mkdocs-material is not installed (pip install -e '.[docs]')")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    home = (tmp_path / "site" / "index.html").read_text()
    assert "What a bench answers" in home and 'href="verdicts/' in home


def test_memory_stands_beside_speed_when_the_bench_measured_it() -> None:
    """A bench.json with memory figures (recorded) gets the peak column, each row its own backend's peak."""
    from cvae_bench.bench.results_table import MEMORY_HEADER
    from cvae_bench.core.memory import MIB, of_extra_info

    doc = BenchDocument.from_json(read_json(ROOT / "tests" / "data" / "memory" / "bench.json"))
    block = render(doc)
    assert MEMORY_HEADER in block
    torch_eager = next(e for e in doc.benchmarks if e.name == "train-step[torch-eager]")
    figures = of_extra_info(torch_eager.extra_info)
    assert figures is not None
    row = next(line for line in block.splitlines() if line.startswith("| torch | eager |"))
    assert row.rstrip(" |").endswith(f"{figures.peak_rss / MIB:,.0f}")
