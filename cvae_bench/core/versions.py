"""Installed versions of distributions and modules, read from package metadata (nothing is imported)."""

from __future__ import annotations

import importlib.metadata as md

#: Import names whose distribution is published under other names, in the order they are tried.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
}

NOT_INSTALLED = "not installed"


def dist_version(module: str) -> str:
    """The installed version of the distribution that provides `module`, or "not installed".

    Only that module's own distributions are tried, so one framework is never reported with another's
    version.
    """
    for dist in DISTRIBUTIONS.get(module, (module,)):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return NOT_INSTALLED


def versions(modules: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`dist_version` of each module, by module name."""
    return {m: dist_version(m) for m in modules}
