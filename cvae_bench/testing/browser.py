"""A headless Chromium page on a served folder, for pytest: skips with the reason where no browser can run.

    from cvae_bench.testing.browser import browser_page

    def test_page(tmp_path):
        write_my_site(tmp_path)
        with browser_page(tmp_path, "index.html") as b:
            b.page.wait_for_function("window.ready === true")
            b.screenshot("my-page")          # test-artifacts/my-page.png
            assert b.errors.all == []        # console errors and uncaught exceptions

The folder is served on 127.0.0.1 from a thread (with COOP/COEP headers unless `isolated=False`), and
Debian's chromium is driven by Playwright (`cvae_bench.serving.browser`); nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cvae_bench.serving.browser import PageErrors, browser_missing, open_page

#: Where screenshots go: $CVAE_BENCH_ARTIFACTS, else test-artifacts/ in the working folder (git-ignored).
ARTIFACTS_ENV = "CVAE_BENCH_ARTIFACTS"


def artifacts_dir() -> Path:
    """The folder test artefacts are written to (created)."""
    folder = Path(os.environ.get(ARTIFACTS_ENV, "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class BrowserPage:
    """A Playwright page and the errors it reported so far."""

    page: Any
    errors: PageErrors

    def screenshot(self, name: str) -> Path:
        """Save a full-page PNG as `<artifacts>/<name>.png` and return its path."""
        path = artifacts_dir() / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextlib.contextmanager
def browser_page(
    folder: str | Path, path: str = "index.html", *, isolated: bool = True, timeout_s: float = 60.0
) -> Iterator[BrowserPage]:
    """Serve `folder`, open `path` in headless Chromium, yield a `BrowserPage`; skip where none can run."""
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    with open_page(folder, path, isolated=isolated, timeout_s=timeout_s) as (page, errors):
        yield BrowserPage(page=page, errors=errors)
