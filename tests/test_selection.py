"""Backend selections (`NAME`, `NAME:MODE`, `NAME:all`, lists, `all`) and the declared modes and devices."""

from __future__ import annotations

import pytest

from cvae_bench.backends import registry
from cvae_bench.backends.selection import EVERY_MODE, Selection, parse_selection
from cvae_bench.core.errors import BackendUnavailableError, UnknownBackendError
from cvae_bench.models import DEFAULT_SPEC

AVAILABLE = [n for n, info in registry.all_backends().items() if info.available]
needs_two = pytest.mark.skipif(len(AVAILABLE) < 2, reason="needs two available backends")


def test_one_name_is_its_default_mode() -> None:
    (sel,) = parse_selection(AVAILABLE[0])
    assert sel == Selection(registry.get(AVAILABLE[0]), None)
    assert sel.label == AVAILABLE[0]


@needs_two
def test_a_list_keeps_order_modes_and_drops_duplicates() -> None:
    a, b = AVAILABLE[:2]
    got = parse_selection(f" {b}:eager , {a}, {b}:eager,{a}:{EVERY_MODE}")
    assert [s.label for s in got] == [f"{b}:eager", a, f"{a}:{EVERY_MODE}"]


def test_all_means_default_modes_for_runs_and_every_mode_for_benchmarks() -> None:
    runs = parse_selection("all")
    benches = parse_selection("all", all_modes=True)
    assert [s.info.name for s in runs] == [s.info.name for s in benches] == AVAILABLE
    assert {s.mode for s in runs} == {None}
    assert {s.mode for s in benches} == {EVERY_MODE}


@pytest.mark.parametrize("text", ["", " , ", "tf", "torch:", "torch,nope"])
def test_bad_selections_name_what_is_known(text: str) -> None:
    with pytest.raises(UnknownBackendError) as err:
        parse_selection(text)
    message = str(err.value)
    assert "Known:" in message or "names no mode" in message


def test_an_unavailable_backend_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    info = registry.get(AVAILABLE[0])
    broken = type(info)(**{**info.__dict__, "requires": ("no_such_module_xyz",), "install_hint": "pip install xyz"})
    monkeypatch.setattr(registry, "get", lambda name: broken)
    with pytest.raises(BackendUnavailableError, match="pip install xyz"):
        parse_selection("anything")


def test_a_plugin_cannot_run_in_a_mode_or_on_a_device_it_does_not_declare() -> None:
    """The example plugin declares cpu/eager only: asking for more is refused before anything is built."""
    info = registry.all_backends().get("numpy")
    if info is None or not info.available:
        pytest.skip("the example numpy plugin is not installed (pip install -e examples/numpy_plugin)")
    cls = info.load_class()
    with pytest.raises(BackendUnavailableError, match=r"no mode 'compiled'; choose one of eager"):
        cls(DEFAULT_SPEC, 0, "cpu", "compiled")
    with pytest.raises(BackendUnavailableError, match=r"cannot run on device 'cuda'; choose one of cpu"):
        cls(DEFAULT_SPEC, 0, "cuda", None)
    assert cls(DEFAULT_SPEC, 0).mode == cls.capabilities.modes[0]
