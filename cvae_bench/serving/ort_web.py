"""onnxruntime-web for the page and the Node check: where npm put it, and the files checked by SHA-256.

The version is pinned in `web/package.json` and its tarball's integrity in `web/package-lock.json`, which
`npm ci` checks; the files copied into a site are checked again here, so that a page only ever ships the
exact files of that version.
"""

from __future__ import annotations

import os
from pathlib import Path

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.runtime.files import file_sha256

#: The pinned version (web/package.json).
ORT_WEB_VERSION = "1.30.0"
#: The dist files a site needs, with their SHA-256 in onnxruntime-web 1.30.0: the WASM build, and the
#: WebGPU build (which runs WASM too, with the asyncify binary).
SITE_FILES = {
    "ort.wasm.min.mjs": "219e6a1fc8a9938268d18efca3c91d310bd2f4a59bbd13744df5b2b7fc6cee3b",
    "ort-wasm-simd-threaded.mjs": "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b",
    "ort-wasm-simd-threaded.wasm": "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2",
    "ort.webgpu.min.mjs": "3dffff71811bc13a3a3d9591c57ca5ee5735b8f5f3eaf789510b02bb040ae3a0",
    "ort-wasm-simd-threaded.asyncify.mjs": "3d1c85995364bb643302fc6fd877a0c3ba5ae72401815e0f24828a53d9191e28",
    "ort-wasm-simd-threaded.asyncify.wasm": "39f9f0894d478800487ed9f7dbe92618498db320cf55c8e3d89adff8dce658da",
}
#: The WASM-only subset (`cvae-bench web --no-webgpu`, the benchmark group): 14 MB instead of 40 MB.
WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
#: The environment variable naming a dist folder to use instead of the checkout's.
ENV = "CVAE_BENCH_ORT_WEB"
#: The checkout's npm folder (package.json, package-lock.json; node_modules/ after `npm ci`).
WEB_DIR = Path(__file__).resolve().parents[2] / "web"
HOW = (
    f"onnxruntime-web {ORT_WEB_VERSION} is missing: run `npm ci --prefix web` in the cvae-bench checkout "
    f"(or set {ENV} to its dist/ folder)"
)


def candidates() -> list[Path]:
    """The dist folders tried, in order: $CVAE_BENCH_ORT_WEB, the checkout's web/, ./web/, ./node_modules/."""
    out = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    for base in (WEB_DIR, Path.cwd() / "web", Path.cwd()):
        out.append(base / "node_modules" / "onnxruntime-web" / "dist")
    return out


def find_dist() -> Path | None:
    """The first candidate folder holding onnxruntime-web's WASM build, or None."""
    return next((d for d in candidates() if (d / WASM_FILES[0]).is_file()), None)


def package_dir() -> Path | None:
    """The onnxruntime-web package folder (for Node's import), or None."""
    dist = find_dist()
    return dist.parent if dist is not None else None


def checked_files(names: tuple[str, ...] | list[str] = tuple(SITE_FILES)) -> dict[str, Path]:
    """The dist files `names`, each checked against its SHA-256.

    Raises:
        CvaeBenchError: the package is not installed (saying how to get it), or a file differs from the
            pinned version's.
    """
    dist = find_dist()
    if dist is None:
        raise CvaeBenchError(HOW)
    out = {}
    for name in names:
        path = dist / name
        if not path.is_file():
            raise CvaeBenchError(f"{path} is missing; {HOW}")
        digest = file_sha256(path)
        if digest != SITE_FILES[name]:
            raise CvaeBenchError(
                f"{path}: sha256 {digest[:12]}… is not onnxruntime-web {ORT_WEB_VERSION}'s "
                f"{SITE_FILES[name][:12]}…; reinstall with `npm ci --prefix web`"
            )
        out[name] = path
    return out
