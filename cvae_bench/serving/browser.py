"""A folder served on localhost and a headless Chromium page on it (Playwright), for tests and benchmarks.

`serve_folder` serves a folder from a thread, with the COOP/COEP headers that let a page use WASM threads;
`open_page` launches Debian's chromium through Playwright (never a downloaded browser) and yields a page
whose console errors and page errors are collected. `browser_missing()` says why a browser cannot run here.
Run `python -m cvae_bench.serving.browser SITE [PORT]` to serve a site by hand with the same headers.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where Debian's chromium package puts the browser; $CVAE_BENCH_CHROMIUM overrides it.
CHROMIUM = "/usr/bin/chromium"
#: Flags for a quiet, offline, headless browser on a small machine.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
#: The headers that make a page cross-origin isolated, which WASM threads (SharedArrayBuffer) need.
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


def chromium_path() -> str:
    """The browser to launch: $CVAE_BENCH_CHROMIUM, else /usr/bin/chromium, else `chromium` on PATH."""
    env = os.environ.get("CVAE_BENCH_CHROMIUM")
    if env:
        return env
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium") or CHROMIUM


def browser_missing() -> str | None:
    """Why no browser can run here (no Playwright, no chromium), or None when one can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'cvae-bench[serve]')"
    path = chromium_path()
    if not os.access(path, os.X_OK):
        return f"no chromium at {path} (apt-get install chromium, or set CVAE_BENCH_CHROMIUM)"
    return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - the base class's own attribute, replaced per class
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".json": "application/json",
    }
    isolated = True

    def end_headers(self) -> None:
        if self.isolated:
            for key, value in ISOLATION_HEADERS.items():
                self.send_header(key, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test's output is not the place for the access log."""


@contextlib.contextmanager
def serve_folder(folder: str | Path, *, isolated: bool = True, port: int = 0) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 from a thread; yields its base URL ('http://127.0.0.1:PORT/').

    Args:
        folder: the folder to serve.
        isolated: send the COOP/COEP headers (WASM threads need them).
        port: the port; 0 picks a free one.
    """
    handler = functools.partial(type("Handler", (_Handler,), {"isolated": isolated}), directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name="cvae-serve-folder", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class PageErrors:
    """What the page reported: console messages of type error, and uncaught exceptions."""

    console: list[str] = field(default_factory=list)
    uncaught: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[str]:
        """Every error, console first."""
        return [*self.console, *self.uncaught]


@contextlib.contextmanager
def open_page(
    folder: str | Path, path: str = "index.html", *, isolated: bool = True, timeout_s: float = 60.0
) -> Iterator[tuple[Any, PageErrors]]:
    """Serve `folder` and open `path` in headless Chromium; yields (Playwright page, its collected errors).

    Raises:
        RuntimeError: no browser can run here (`browser_missing()`'s reason).
    """
    missing = browser_missing()
    if missing:
        raise RuntimeError(missing)
    from playwright.sync_api import sync_playwright

    errors = PageErrors()
    with serve_folder(folder, isolated=isolated) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout_s * 1000)
            page.on("console", lambda m: errors.console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.uncaught.append(str(e)))
            page.goto(base + path.lstrip("/"))
            yield page, errors
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m cvae_bench.serving.browser SITE [PORT]`: serve SITE with COOP/COEP until Ctrl-C."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m cvae_bench.serving.browser SITE [PORT]", file=sys.stderr)
        return 2
    with serve_folder(args[0], port=int(args[1]) if len(args) > 1 else 8000) as url:
        print(f"serving {args[0]} at {url} (COOP/COEP set: WASM threads on); Ctrl-C to stop", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
