"""The Backend contract and the registry of backend plugins (entry-point group `cvae_bench.backends`)."""

from cvae_bench.backends.base import Backend, Capabilities
from cvae_bench.backends.registry import BackendInfo, all_backends, get, resolve

__all__ = ["Backend", "BackendInfo", "Capabilities", "all_backends", "get", "resolve"]
