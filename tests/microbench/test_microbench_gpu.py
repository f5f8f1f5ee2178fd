"""Every real kernel adapter against the float32 reference, and GPU timing (run on the device:
`python3 -m pytest tests/microbench -m gpu`)."""

import pytest

from attnbench.microbench.base import DecodeShape, PrefillShape

pytestmark = pytest.mark.gpu

ADAPTERS = ["fa2", "fa3", "fa4", "flashinfer", "attnbench-fa4"]

DECODE = [
    DecodeShape(batch=3, context_lens=(17, 300, 129)),  # ragged, partial last pages
    DecodeShape(batch=2, context_lens=(40, 1000), q_len=3),  # speculative decoding
    DecodeShape(batch=2, context_lens=(70, 513), q_heads=64, kv_heads=8, head_dim=64, dtype="float16"),
]
PREFILL = [
    PrefillShape(seqlens=(100, 37)),
    PrefillShape(seqlens=(64, 9), context_lens=(77, 300)),  # chunked prefill against the paged cache
]


def _kernel(name, **opts):
    from attnbench.backends import registry
    from attnbench.microbench import run

    if not registry.get(name).availability().ok:
        pytest.skip(f"{name}: {registry.get(name).availability().reason}")
    try:
        return run.load_kernel(name, run.Options(**opts))
    except ImportError as e:
        pytest.skip(f"{name} adapter not importable: {e}")


def _check(kernel, shape):
    from attnbench.microbench import check, inputs

    inp = inputs.inputs_for(shape, "cuda", seed=5)
    reason = kernel.unsupported(shape)
    if reason:
        pytest.skip(reason)
    fn = kernel.decode(shape, inp) if isinstance(shape, DecodeShape) else kernel.prefill(shape, inp)
    verdict = check.run_checked(fn, inp.out, check.reference(shape, inp), shape.dtype)
    assert verdict.ok, verdict.describe()
    return fn


@pytest.mark.parametrize("shape", DECODE, ids=lambda s: s.label())
@pytest.mark.parametrize("name", ADAPTERS)
def test_decode_matches_reference(name, shape):
    _check(_kernel(name), shape)


@pytest.mark.parametrize("shape", PREFILL, ids=lambda s: s.label())
@pytest.mark.parametrize("name", ["fa2", "fa3", "fa4", "flashinfer"])
def test_prefill_matches_reference(name, shape):
    _check(_kernel(name), shape)


def test_fa4_without_split_kv_is_also_correct():
    _check(_kernel("fa4", fa4_splits=1), DecodeShape.uniform(1, 4096))


@pytest.mark.parametrize("name", ADAPTERS)
def test_closure_is_captured_in_a_cuda_graph(name):
    from attnbench.microbench import timing

    fn = _check(_kernel(name), DecodeShape.uniform(4, 1024))
    t = timing.time_calls([fn], "cuda", repeats=5)
    assert t.graph, t.note
    assert 0 < t.us < 1e4


def test_roofline_measures_plausible_ceilings():
    from attnbench.microbench import roofline

    roof = roofline.measure("cuda", copy_bytes=256 << 20, matmul_n=4096, repeats=3)
    assert 100 < roof["measured_gbps"] < 20000 and 10 < roof["measured_tflops"] < 5000


def test_decode_time_us_with_a_real_backend():
    from attnbench.microbench import api

    _kernel("fa2")
    assert api.decode_time_us("fa2", DecodeShape.uniform(8, 2048), repeats=5) > 0
