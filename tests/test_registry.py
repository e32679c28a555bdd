"""The backend registry: entry-point discovery, lazy imports, missing frameworks, bad plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvae_bench.backends import registry
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.core.errors import BackendUnavailableError, PluginError, UnknownBackendError

BUILTINS = {"torch", "keras-torch", "keras-tensorflow", "keras-jax"}


def _install_fake_dist(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A minimal installed distribution (dist-info with entry points) plus its modules, under `root`."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[cvae_bench.backends]\n{lines}\n")
    for mod, src in modules.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(src))


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield tmp_path
    registry.refresh()


GOOD_PLUGIN = """
from cvae_bench_numpy import NumpyBackend

class FakeBackend(NumpyBackend):
    '''A fake backend for tests.'''
    name = "fake"
"""


def test_builtins_are_registered_through_entry_points() -> None:
    found = registry.all_backends()
    assert set(found) >= BUILTINS
    assert all(found[n].origin == "builtin" for n in BUILTINS)


def test_listing_backends_imports_no_framework() -> None:
    code = (
        "import sys; from cvae_bench.backends import registry\n"
        "for i in registry.all_backends().values(): i.available, i.versions(), i.unavailable_reason()\n"
        "from cvae_bench import cli\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownBackendError, match=r"Unknown backend 'tf'\. Known: .*keras-jax.*torch"):
        registry.get("tf")


def test_resolve_lists_and_all() -> None:
    assert [i.name for i in registry.resolve("torch, keras-jax")] == ["torch", "keras-jax"]
    assert {i.name for i in registry.resolve("all")} == {n for n, i in registry.all_backends().items() if i.available}
    with pytest.raises(UnknownBackendError):
        registry.resolve("torch,nope")


def test_missing_framework_is_unavailable_with_reason_and_hint() -> None:
    info = BackendInfo(
        name="ghost",
        target="ghost_mod:Ghost",
        requires=("no_such_framework_xyz",),
        install_hint="pip install ghost",
    )
    assert not info.available
    assert info.unavailable_reason() == (
        "backend 'ghost' needs no_such_framework_xyz, which is not installed; install it with: pip install ghost"
    )
    assert info.versions() == {"no_such_framework_xyz": "not installed"}
    with pytest.raises(BackendUnavailableError, match="no_such_framework_xyz"):
        info.load_class()


def test_entry_point_plugin_is_discovered_and_checked(plugin_dir: Path) -> None:
    _install_fake_dist(
        plugin_dir, "fake-plugin", {"fake": "fake_backend_mod:FakeBackend"}, {"fake_backend_mod": GOOD_PLUGIN}
    )
    pytest.importorskip("cvae_bench_numpy", reason="the example plugin (examples/numpy_plugin) is not installed")
    info = registry.get("fake")
    assert info.origin == "fake-plugin"
    assert info.available
    assert info.load_class().name == "fake"


def test_plugin_missing_methods_is_named(plugin_dir: Path) -> None:
    _install_fake_dist(
        plugin_dir,
        "half-plugin",
        {"half": "half_mod:Half"},
        {
            "half_mod": """
        from cvae_bench.backends import Backend
        class Half(Backend):
            name = "half"
            framework = "none"
            def encode(self, x, y): ...
    """
        },
    )
    with pytest.raises(PluginError, match=r"plugin 'half' from half-plugin does not implement: .*decode.*train_step"):
        registry.all_backends()


def test_plugin_that_is_not_a_backend(plugin_dir: Path) -> None:
    _install_fake_dist(plugin_dir, "odd-plugin", {"odd": "odd_mod:thing"}, {"odd_mod": "thing = 42\n"})
    with pytest.raises(PluginError, match=r"expected a subclass of cvae_bench\.backends\.Backend"):
        registry.all_backends()


def test_duplicate_names_are_refused(plugin_dir: Path) -> None:
    _install_fake_dist(plugin_dir, "dup-plugin", {"torch": "cvae_bench.backends.builtin:TORCH"}, {})
    with pytest.raises(PluginError, match="registered twice"):
        registry.all_backends()


def test_plugin_whose_framework_is_missing_is_listed_unavailable(plugin_dir: Path) -> None:
    _install_fake_dist(
        plugin_dir,
        "needy-plugin",
        {"needy": "needy_mod:Needy"},
        {"needy_mod": "import no_such_framework_xyz\n"},
    )
    info = registry.get("needy")
    assert not info.available
    assert info.unavailable_reason() == (
        "backend 'needy' from needy-plugin failed to import: No module named 'no_such_framework_xyz'"
    )
