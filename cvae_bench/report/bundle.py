"""The plotly.js a report page inlines: the pinned basic partial bundle (1.2 MB) where npm installed it, else
plotly.py's full bundle (4.8 MB).

The report draws scatter and bar traces only, which plotly's "basic" partial bundle holds (with error bars, log
axes, subplots, shapes, annotations and buttons). It is pinned in `web/package.json`, its tarball's integrity in
`web/package-lock.json` (`npm ci --prefix web`), and the file is checked here by SHA-256 before it is inlined.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cvae_bench.report.inputs import ReportError
from cvae_bench.runtime.files import file_sha256

#: The pinned partial bundle (web/package.json): the same plotly.js version as plotly.py 7.1 writes for.
BASIC_VERSION = "4.1.1"
BASIC_FILE = "plotly-basic.min.js"
BASIC_SHA256 = "99784e3abfb07b142a15e521a439e6d9addceadb3f79553fd24c72774f0649ba"
#: The environment variable naming a plotly-basic.min.js to use instead of the checkout's.
ENV = "CVAE_BENCH_PLOTLY_JS"
#: The checkout's npm folder (as for onnxruntime-web).
WEB_DIR = Path(__file__).resolve().parents[2] / "web"


@dataclass(frozen=True)
class Bundle:
    """The JavaScript to inline and what it is (said on the page)."""

    js: str
    name: str


def candidates() -> list[Path]:
    """The files tried, in order: $CVAE_BENCH_PLOTLY_JS, the checkout's web/, ./web/."""
    out = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    for base in (WEB_DIR, Path.cwd() / "web"):
        out.append(base / "node_modules" / "plotly.js-basic-dist-min" / BASIC_FILE)
    return out


def basic_bundle() -> Path | None:
    """The first candidate that is the pinned basic bundle (by SHA-256), or None."""
    return next((p for p in candidates() if p.is_file() and file_sha256(p) == BASIC_SHA256), None)


def plotly_bundle() -> Bundle:
    """The basic partial bundle when installed, else plotly.py's full one.

    Raises:
        ReportError: neither is available (plotly is not installed).
    """
    basic = basic_bundle()
    if basic is not None:
        return Bundle(basic.read_text(encoding="utf-8"), f"plotly.js {BASIC_VERSION} basic")
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        raise ReportError("reports need plotly: pip install 'cvae-bench[report]' (or pip install plotly)") from exc
    return Bundle(get_plotlyjs(), "plotly.js full (npm ci --prefix web for the 1.2 MB basic bundle)")
