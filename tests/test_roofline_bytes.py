"""The byte-aware roofline: byte counts against hand-computed values from the spec, and the floor arithmetic."""

from __future__ import annotations

import math

import pytest

from cvae_bench.bench.roofline import (
    DATA,
    ELEMENTWISE,
    GEMM,
    OPTIMIZER,
    Ceiling,
    Gemm,
    Roofline,
    bandwidth_at,
    decode_passes,
    decode_workload,
    gemm_bytes,
    param_count,
    summarize_roofline,
    train_step_passes,
    train_step_workload,
)
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec

# Hand counts for the tutorial's spec: encoder 794→512→32→4, decoder 12→32→512→784, batch 64, K = 5, L = 2.
ENCODER_PARAMS = 794 * 512 + 512 + 512 * 32 + 32 + 32 * 4 + 4  # 423,588
DECODER_PARAMS = 12 * 32 + 32 + 32 * 512 + 512 + 512 * 784 + 784  # 419,504


def by_name(passes: list) -> dict:
    return {p.name: p for p in passes}


def test_param_count_and_adam_bytes() -> None:
    assert param_count(DEFAULT_SPEC) == ENCODER_PARAMS + DECODER_PARAMS == 843_092
    adam = by_name(train_step_passes(DEFAULT_SPEC))["Adam"]
    assert adam.category == OPTIMIZER
    # reads parameters, gradients, m and v; writes parameters, m and v: 7 × 4 bytes per parameter
    assert adam.read_bytes == 4 * 4 * 843_092
    assert adam.write_bytes == 3 * 4 * 843_092
    assert adam.bytes == 7 * 3_372_368 == 23_606_576


def test_train_step_element_wise_passes_by_hand() -> None:
    p = by_name(train_step_passes(DEFAULT_SPEC))
    b = 64
    assert p["encoder.dense_0 bias"].read_bytes == 4 * (b * 512 + 512)
    assert p["encoder.dense_0 bias"].write_bytes == 4 * b * 512
    assert p["encoder.dense_0 relu"].bytes == 2 * 4 * b * 512
    assert "encoder.dense_2 relu" not in p  # the encoder's last layer is linear
    assert p["decoder.dense_2 sigmoid"].bytes == 2 * 4 * b * 784
    assert p["decoder.dense_2 sigmoid"].flops == 4 * b * 784
    assert p["Gaussian NLL"].read_bytes == 4 * 2 * b * 784  # x and x_mean
    assert p["decoder.dense_1 relu backward"].bytes == 4 * 3 * b * 512  # dY and the mask in, dX out
    assert p["decoder.dense_2 bias gradient"].write_bytes == 4 * 784
    assert p["noise ε"].write_bytes == 4 * 5 * b * 2
    assert p["batch (x, y)"].category == DATA
    # every layer has one bias pass forward and one bias gradient backward
    assert sum(n.endswith(" bias") for n in p) == sum(n.endswith(" bias gradient") for n in p) == 6
    total = sum(x.bytes for x in p.values())
    assert total == 29_300_176  # counted by hand once, pinned: a changed count must be deliberate


def test_bytes_follow_the_spec() -> None:
    wide = ModelSpec(decoder_hidden=(32, 1024), batch_size=32)
    p = by_name(train_step_passes(wide))
    assert p["decoder.dense_1 relu"].bytes == 2 * 4 * 32 * 1024
    assert p["Adam"].bytes == 7 * 4 * (wide.param_count("encoder") + wide.param_count("decoder"))


def test_decode_passes() -> None:
    p = by_name(decode_passes(DEFAULT_SPEC, 1024))
    assert set(p) == {
        "inputs (z, y)",
        "decoder input concat",
        "decoder.dense_0 bias",
        "decoder.dense_0 relu",
        "decoder.dense_1 bias",
        "decoder.dense_1 relu",
        "decoder.dense_2 bias",
        "decoder.dense_2 sigmoid",
    }
    assert p["decoder.dense_2 sigmoid"].bytes == 2 * 4 * 1024 * 784
    assert all(x.category in (DATA, ELEMENTWISE) for x in p.values())


def test_gemm_bytes() -> None:
    assert gemm_bytes(Gemm(64, 794, 512)) == 4 * (64 * 794 + 794 * 512 + 64 * 512)


def test_bandwidth_envelope_and_interpolation() -> None:
    bw = {"4096": {"numpy": 1e9}, "16384": {"numpy": 8e9, "torch": 4e9}, "65536": {"numpy": 2e9}}
    assert bandwidth_at(bw, 4096) == 8e9  # a small working set has at least the bandwidth of a larger one
    assert bandwidth_at(bw, 100) == 8e9
    assert bandwidth_at(bw, 16384) == pytest.approx(8e9)
    assert bandwidth_at(bw, 1 << 30) == 2e9
    mid = bandwidth_at(bw, 32768)
    assert mid == pytest.approx(math.sqrt(8e9 * 2e9))  # halfway on a log axis
    assert bandwidth_at({}, 4096) is None


def fake_ceiling(gemm_s: float = 1e-4, bps: float = 1e10, flops: float = 1e10) -> Ceiling:
    w = train_step_workload(DEFAULT_SPEC)
    d = decode_workload(DEFAULT_SPEC, 1024)
    shapes = {g.key: {"numpy": gemm_s, "torch": 2 * gemm_s} for g in (*w.gemms, *d.gemms)}
    return Ceiling(
        libraries={"numpy": "x", "torch": "y"},
        shapes=shapes,
        medians=shapes,
        bandwidth={"4096": {"numpy": bps}, str(1 << 26): {"numpy": bps}},
        elementwise_flops={"numpy": flops},
    )


def test_full_floor_is_the_sum_of_each_parts_larger_time() -> None:
    w = train_step_workload(DEFAULT_SPEC)
    roof = summarize_roofline(fake_ceiling(), [w, decode_workload(DEFAULT_SPEC, 1024)])
    t = roof.train_step
    assert t is not None and t.parts is not None and t.full_floor_s is not None
    assert t.floor_s == pytest.approx(len(w.gemms) * 1e-4)
    for part in t.parts:
        assert part.floor_s == max(part.compute_s, part.memory_s)
        if part.category != GEMM:
            assert part.memory_s == pytest.approx(part.bytes / 1e10)
            assert part.compute_s == pytest.approx(part.flops / 1e10)
    assert t.full_floor_s == pytest.approx(sum(p.floor_s for p in t.parts))
    assert t.full_floor_s == pytest.approx(sum(t.category_floor_s.values()))
    assert t.category_floor_s[OPTIMIZER] == pytest.approx(23_606_576 / 1e10)  # memory-bound at 10 GB/s
    gemms = [max(1e-4, gemm_bytes(g) / 1e10) for g in w.gemms]  # the big GEMMs are memory-bound at 10 GB/s
    assert t.category_floor_s[GEMM] == pytest.approx(sum(gemms))
    assert t.full_floor_s > t.floor_s
    dec = roof.decode[1024]
    assert dec.parts is None and dec.full_floor_s == pytest.approx(sum(dec.category_floor_s.values()))
    back = Roofline.from_json(roof.to_json())
    assert back.train_step == t


def test_a_ceiling_without_bandwidth_keeps_the_gemm_floor_only() -> None:
    c = fake_ceiling()
    old = Ceiling(libraries=c.libraries, shapes=c.shapes, medians=c.medians)
    t = summarize_roofline(old, [train_step_workload(DEFAULT_SPEC)]).train_step
    assert t is not None and t.full_floor_s is None and t.parts is None and t.floor_s > 0
