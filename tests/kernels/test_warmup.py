"""What attnbench-fa4 asks vLLM's start-up CuTe DSL warm-up to compile: recorded by stand-in
compile functions (the real ones need a GPU and vLLM), for limits like the seed's server."""

import dataclasses

import pytest

from attnbench.kernels import warmup
from attnbench.kernels.fa4_decode import tuning
from attnbench.kernels.fa4_decode.config import CombineConfig, DecodeConfig
from attnbench.kernels.fa4_decode.launcher import decode_configs

QWEN = warmup.Layer(q_heads=16, kv_heads=8, head_dim=128, page_size=16, dtype="bfloat16")
V3 = tuning.Tuning(128, 2, 6, smem_stages=3)
# vLLM 0.26's default capture sizes: 1, 2, 4, then every 8 up to 256, then every 16 up to 512
CAPTURE = (1, 2, 4, *range(8, 257, 8), *range(272, 513, 16))


def _record(layer, limits):
    asked = []
    found = warmup.units(layer, limits, arch="sm_90a", compile_decode=lambda cfg: asked.append(("decode", cfg)),
                         compile_prefill=lambda probe: asked.append(("prefill", probe)))
    for unit in found:
        unit.compile()
    return found, asked


def _pair(t):
    return list(decode_configs(t, dtype="bfloat16", head_dim=128, group=2, page_size=16))


def _measured(monkeypatch, winners: dict) -> None:
    """The launcher reads a table in which only `winners` ((batch, context) -> tuning) of the
    16/8/128 page-16 geometry are measured, every other class of the committed grid unmeasured."""
    rows = tuple(dataclasses.replace(r, tuning=winners.get((r.batch, r.context)) if r.geometry == (2, 128, 16) else None)
                 for r in tuning.table().rows)
    table = tuning.Table(rows, {}, "test")
    monkeypatch.setattr(tuning, "table", lambda: table)


def test_decode_warmup_compiles_every_configuration_the_captured_batches_and_contexts_choose(monkeypatch):
    monkeypatch.delenv(tuning.ENV, raising=False)
    combine = CombineConfig("bfloat16", 128, 64)
    # 1000:1000 seed: max_model_len 2048. Both measured classes (B256 x 2048, B1 x 32768) chose
    # the v3 ring, and every unmeasured class of this geometry borrows the nearest of them
    _measured(monkeypatch, {(256, 2048): V3, (1, 32768): V3})
    limits = warmup.ServerLimits(CAPTURE, max_batch=512, max_model_len=2048, max_num_batched_tokens=8192)
    _, asked = _record(QWEN, limits)
    assert [cfg for kind, cfg in asked if kind == "decode"] == _pair(V3) + [combine]
    # 64 sequences at most, 9000 tokens: no measured class is reached, their winner still is
    limits = warmup.ServerLimits(CAPTURE[:10], max_batch=64, max_model_len=9000, max_num_batched_tokens=8192)
    _, asked = _record(QWEN, limits)
    assert [cfg for kind, cfg in asked if kind == "decode"] == _pair(V3) + [combine]
    # classes with different winners: the server compiles each winner the limits reach, once
    v4 = tuning.Tuning(128, 1, 2, smem_stages=3, mma=True)
    _measured(monkeypatch, {(256, 2048): V3, (32, 2048): v4, (1, 32768): v4})
    limits = warmup.ServerLimits(CAPTURE, max_batch=512, max_model_len=2048, max_num_batched_tokens=8192)
    _, asked = _record(QWEN, limits)
    assert [cfg for kind, cfg in asked if kind == "decode"] == _pair(v4) + _pair(V3) + [combine]
    # the override replaces the table, as it does in the launcher
    wide = tuning.Tuning(256, 2, 3)
    monkeypatch.setenv(tuning.ENV, wide.spec())
    _, asked = _record(QWEN, limits)
    assert [cfg for kind, cfg in asked if kind == "decode"] == _pair(wide) + [combine]
    assert all(isinstance(cfg, (DecodeConfig, CombineConfig)) for _, cfg in asked if _ == "decode")


def test_fa4_prefill_probes_are_the_warmup_chunk_sizes_and_every_split_regime():
    limits = warmup.ServerLimits((1, 2, 4, 8), max_batch=8, max_model_len=600, max_num_batched_tokens=16,
                                 compile_sizes=(12,))
    _, asked = _record(QWEN, limits)
    probes = [(p.num_reqs, p.max_seqlen_q, p.max_seqlen_k) for kind, p in asked if kind == "prefill"]
    assert probes == [
        (1, 2, 2), (1, 2, 600), (1, 4, 4), (1, 4, 600), (1, 8, 8), (1, 8, 600), (1, 12, 12), (1, 12, 600),
        (1, 16, 16), (1, 16, 600),  # each chunk vLLM warms up: a fresh prompt, and the end of the longest
        (1, 2, 128), (1, 2, 256), (1, 2, 512),  # a short query against every KV length: each split count
    ]


def test_probes_stay_within_the_model_length_and_batched_tokens():
    limits = warmup.ServerLimits(CAPTURE, max_batch=512, max_model_len=2048, max_num_batched_tokens=8192)
    probes = warmup.prefill_probes(limits)
    assert max(p.max_seqlen_k for p in probes) == 2048 and max(p.max_seqlen_q for p in probes) == 2048
    assert min(p.max_seqlen_q for p in probes) == 2  # 1 is a decode step, not a prefill chunk
    assert len(probes) == len(set(probes))
    assert warmup.PrefillProbe(4, 2048, 2048) in probes  # 8192 batched tokens: four whole prompts
    assert {p.max_seqlen_q for p in probes} >= {s for s in CAPTURE if 2 <= s <= 2048}


def test_prefill_on_fa3_asks_for_our_decode_only():
    """FA3 (vLLM's pick on SM90) is compiled ahead of time: no prefill probes."""
    limits = warmup.ServerLimits((1, 2, 4, 8), max_batch=8, max_model_len=600, max_num_batched_tokens=64)
    found = warmup.units(QWEN, limits, arch="sm_90a", compile_decode=lambda cfg: None, compile_prefill=None)
    assert found and {u.name for u in found} == {"attnbench_fa4_decode"}


def test_layers_of_one_geometry_ask_for_the_same_keys_so_vllm_compiles_once():
    limits = warmup.ServerLimits(CAPTURE, max_batch=256, max_model_len=4096, max_num_batched_tokens=8192)
    a, _ = _record(QWEN, limits)
    b, _ = _record(warmup.Layer(16, 8, 128, 16, "bfloat16"), limits)
    assert [u.key for u in a] == [u.key for u in b] and len({u.key for u in a}) == len(a)
    window = warmup.Layer(16, 8, 128, 16, "bfloat16", decode_ours=False, fa4_variant=((127, 0), 0.0, False))
    c, asked = _record(window, limits)
    assert not [x for x in asked if x[0] == "decode"]  # FA4 decodes a windowed layer: nothing of ours to compile
    assert {u.key for u in c}.isdisjoint({u.key for u in a})  # its FA4 kernels differ (window) and are asked for


@pytest.mark.parametrize("page, group, head_dim", [(128, 2, 128), (16, 8, 64)])
def test_other_geometries_compile_their_fallback(monkeypatch, page, group, head_dim):
    monkeypatch.delenv(tuning.ENV, raising=False)
    layer = warmup.Layer(8 * group, 8, head_dim, page, "float16")
    limits = warmup.ServerLimits(CAPTURE, max_batch=512, max_model_len=32768, max_num_batched_tokens=8192)
    _, asked = _record(layer, limits)
    decode = [cfg for kind, cfg in asked if kind == "decode"]
    fb = tuning.fallback(group)
    assert decode[:-1] == list(decode_configs(fb, dtype="float16", head_dim=head_dim, group=group, page_size=page))
    assert decode[-1] == CombineConfig("float16", head_dim, 64)
