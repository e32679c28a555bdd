"""Backend discovery through the `cvae_bench.backends` entry-point group, without importing frameworks."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import inspect
from dataclasses import dataclass, field
from functools import cache

from cvae_bench.backends.base import Backend
from cvae_bench.core.checks import did_you_mean
from cvae_bench.core.errors import BackendUnavailableError, PluginError, UnknownBackendError
from cvae_bench.core.versions import versions as installed_versions

ENTRY_POINT_GROUP = "cvae_bench.backends"


@dataclass(frozen=True)
class BackendInfo:
    """What the registry knows of a backend before importing it.

    Attributes:
        name: the registry name (`--backend NAME`).
        target: "module:Class" of the Backend subclass, imported only when the backend is created.
        requires: importable modules the backend needs; a missing one makes it unavailable.
        install_hint: the command that installs what is missing.
        env: environment variables its worker process needs before any import (KERAS_BACKEND).
        devices: device kinds it can use.
        modes: training modes it declares, the default first (the class's `Capabilities.modes`, restated here
            so that a mode can be checked without importing the framework); empty: not declared, the worker
            checks it.
        description: one line for the table.
        origin: where it was registered from ("builtin" or the distribution name); set by the registry.
        error: why a plugin's module failed to import, if it did.
    """

    name: str
    target: str
    requires: tuple[str, ...] = ()
    install_hint: str = ""
    env: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu",)
    modes: tuple[str, ...] = ()
    description: str = ""
    origin: str = "builtin"
    error: str = ""

    def missing(self) -> list[str]:
        """The required modules that cannot be found (checked without importing them)."""
        out = []
        for mod in self.requires:
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out.append(mod)
        return out

    @property
    def available(self) -> bool:
        """True when every required module is importable."""
        return not self.error and not self.missing()

    def unavailable_reason(self) -> str:
        """One line saying what is missing and how to install it ('' when available)."""
        if self.error:
            return f"backend {self.name!r} from {self.origin} failed to import: {self.error}"
        missing = self.missing()
        if not missing:
            return ""
        hint = f"; install it with: {self.install_hint}" if self.install_hint else ""
        return f"backend {self.name!r} needs {', '.join(missing)}, which is not installed{hint}"

    def versions(self) -> dict[str, str]:
        """Installed versions of the required distributions, read from package metadata."""
        return installed_versions(self.requires)

    def load_class(self) -> type[Backend]:
        """Import and check the Backend subclass (this imports the framework)."""
        if not self.available:
            raise BackendUnavailableError(self.unavailable_reason())
        module_name, _, attr = self.target.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise BackendUnavailableError(f"backend {self.name!r} ({self.target}) failed to import: {exc}") from exc
        check_backend_class(obj, self.name, self.origin)
        return obj  # type: ignore[no-any-return]


def check_backend_class(obj: object, name: str, origin: str) -> None:
    """Raise PluginError naming the plugin and what it lacks unless `obj` implements Backend."""
    where = f"plugin {name!r} from {origin}"
    if not (inspect.isclass(obj) and issubclass(obj, Backend)):
        raise PluginError(f"{where} is {obj!r}, expected a subclass of cvae_bench.backends.Backend")
    missing = sorted(getattr(obj, "__abstractmethods__", ()))
    for attr in ("name", "framework"):
        if not isinstance(getattr(obj, attr, None), str):
            missing.append(attr)
    if missing:
        raise PluginError(f"{where} does not implement: {', '.join(missing)}")
    if obj.name != name:
        raise PluginError(f"{where} registers as {name!r} but its class says name={obj.name!r}")


def _info_from_entry_point(ep: md.EntryPoint) -> BackendInfo:
    origin = ep.dist.name if ep.dist is not None else "unknown"
    if origin == "cvae-bench":
        origin = "builtin"
    module_name, _, attr = ep.value.partition(":")
    try:
        obj = ep.load()
    except ImportError as exc:
        # A third-party class whose module imports a missing framework at top level.
        return BackendInfo(name=ep.name, target=ep.value, origin=origin, error=str(exc))
    if isinstance(obj, BackendInfo):
        if obj.name != ep.name:
            raise PluginError(f"plugin {ep.name!r} from {origin} points at BackendInfo named {obj.name!r}")
        return BackendInfo(**{**obj.__dict__, "origin": origin})
    check_backend_class(obj, ep.name, origin)
    caps = obj.capabilities
    return BackendInfo(
        name=ep.name,
        target=f"{module_name}:{attr or obj.__name__}",
        requires=(obj.framework,),
        devices=caps.devices,
        modes=caps.modes,
        origin=origin,
        description=(obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else "",
    )


@cache
def _discover() -> dict[str, BackendInfo]:
    found: dict[str, BackendInfo] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        info = _info_from_entry_point(ep)
        if info.name in found:
            raise PluginError(
                f"backend name {info.name!r} is registered twice: by {found[info.name].origin} and by {info.origin}"
            )
        found[info.name] = info
    return dict(sorted(found.items()))


def refresh() -> None:
    """Forget what was discovered (after installing a plugin at run time, and in tests)."""
    _discover.cache_clear()


def all_backends() -> dict[str, BackendInfo]:
    """Every registered backend, available or not, by name."""
    return dict(_discover())


def get(name: str) -> BackendInfo:
    """The backend registered as `name`.

    Raises:
        UnknownBackendError: no such name; the message lists the known ones.
    """
    backends = _discover()
    if name in backends:
        return backends[name]
    # Names are lower case; `Torch` and `TORCH` mean torch rather than an error.
    folded = {n.casefold(): n for n in backends}
    if name.casefold() in folded:
        return backends[folded[name.casefold()]]
    raise UnknownBackendError(f"Unknown backend {name!r}.{did_you_mean(name, backends)} Known: {', '.join(backends)}.")


def resolve(spec: str) -> list[BackendInfo]:
    """Backends named by a CLI argument: one name, a comma-separated list, or "all" (the available ones)."""
    if spec.strip().casefold() == "all":
        chosen = [b for b in _discover().values() if b.available]
        if not chosen:
            raise BackendUnavailableError("no backend is available; install one, e.g. pip install 'cvae-bench[torch]'")
        return chosen
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UnknownBackendError(f"No backend named in {spec!r}. Known: {', '.join(_discover())}.")
    return [get(n) for n in names]
