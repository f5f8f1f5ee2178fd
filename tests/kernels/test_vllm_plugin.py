"""The vLLM plugin registers attnbench-fa4 as the CUSTOM backend; the backend routes decode-only
batches to our kernel over vLLM's packed KV cache. Tests needing vLLM skip without it."""

import itertools
import math
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from attnbench.errors import UserError
from attnbench.kernels import vllm_plugin
from attnbench.microbench.check import TOLERANCE

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_plugin_imports_neither_torch_nor_vllm():
    code = ("import sys, attnbench.kernels.vllm_plugin; "
            "heavy = [m for m in ('torch', 'vllm') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_entry_point_is_declared_and_resolves():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = project["project"]["entry-points"]["vllm.general_plugins"]["attnbench_fa4"]
    module, _, attr = target.partition(":")
    assert module == vllm_plugin.__name__ and getattr(vllm_plugin, attr) is vllm_plugin.register


def test_without_vllm_register_fails_with_a_one_line_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(UserError, match=r"needs vLLM .*pip install 'attnbench\[gpu\]'"):
        vllm_plugin.register()


def test_a_vllm_without_the_custom_registry_is_skipped_with_a_warning(monkeypatch, caplog):
    old = types.ModuleType("vllm")
    old.__version__ = "0.6.0"
    monkeypatch.setitem(sys.modules, "vllm", old)
    monkeypatch.setitem(sys.modules, "vllm.v1.attention.backends.registry", None)
    # the handler goes on the logger itself: vLLM's logging config stops propagation at "vllm"
    vllm_plugin.log.addHandler(caplog.handler)
    try:
        assert vllm_plugin.register() is False
    finally:
        vllm_plugin.log.removeHandler(caplog.handler)
    assert "0.6.0" in caplog.text and "not registered" in caplog.text


@pytest.fixture
def vllm_registry():
    pytest.importorskip("torch")
    pytest.importorskip("vllm")
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    custom = AttentionBackendEnum.CUSTOM
    before = custom.get_path() if custom.is_overridden() else None
    custom.clear_override()
    yield AttentionBackendEnum
    custom.clear_override()
    if before is not None:
        from vllm.v1.attention.backends.registry import register_backend

        register_backend(custom, before)


def test_register_points_custom_at_our_backend_and_is_idempotent(vllm_registry):
    assert vllm_plugin.register() is True
    assert vllm_plugin.register() is True
    custom = vllm_registry.CUSTOM
    assert custom.get_path() == vllm_plugin.BACKEND_PATH
    cls = custom.get_class()
    # vLLM maps each layer back to the enum with AttentionBackendEnum[backend.get_name()]
    assert vllm_registry[cls.get_name()] is custom


def test_backend_is_fa4_for_sm90_without_fp8(vllm_registry):
    from vllm.platforms.interface import DeviceCapability
    from vllm.v1.attention.backend import AttentionCGSupport

    from attnbench.kernels.vllm_backend import AttnbenchFA4Backend

    assert AttnbenchFA4Backend.supports_compute_capability(DeviceCapability(9, 0))
    assert not AttnbenchFA4Backend.supports_compute_capability(DeviceCapability(10, 0))
    assert AttnbenchFA4Backend.supports_kv_cache_dtype("auto")
    assert not AttnbenchFA4Backend.supports_kv_cache_dtype("fp8")
    assert AttnbenchFA4Backend.get_builder_cls()._cudagraph_support is AttentionCGSupport.UNIFORM_BATCH
    assert AttnbenchFA4Backend.get_kv_cache_shape(10, 16, 8, 128) == (10, 8, 16, 256)
    assert AttnbenchFA4Backend.get_builder_cls().use_cascade_attention(None, 4096) is False


def metadata(seq_lens, query_lens, block_table, **overrides):
    import torch
    from vllm.v1.attention.backends.flash_attn import FlashAttentionMetadata

    qsl = torch.tensor([0, *itertools.accumulate(query_lens)], dtype=torch.int32)
    fields = dict(
        num_actual_tokens=sum(query_lens), max_query_len=max(query_lens), query_start_loc=qsl,
        max_seq_len=max(seq_lens), seq_lens=torch.tensor(seq_lens, dtype=torch.int32),
        block_table=block_table, slot_mapping=torch.zeros(sum(query_lens), dtype=torch.int64),
        use_cascade=False, common_prefix_len=0, cu_prefix_query_lens=None, prefix_kv_lens=None,
        suffix_kv_lens=None,
    )
    fields.update(overrides)
    return FlashAttentionMetadata(**fields)




def test_only_plain_decode_batches_are_ours(vllm_registry):
    import torch

    from attnbench.kernels.vllm_backend import is_plain_decode

    bt = torch.zeros(3, 4, dtype=torch.int32)
    assert is_plain_decode(metadata([5, 9, 1], [1, 1, 1], bt))
    assert not is_plain_decode(metadata([5, 9, 4], [1, 1, 4], bt))  # mixed prefill/decode
    assert not is_plain_decode(metadata([5, 9, 1], [1, 1, 1], bt, use_cascade=True))
    assert not is_plain_decode(metadata([5, 9, 1], [1, 1, 1], bt, sliding_window=(127, 0)))
    assert is_plain_decode(metadata([5, 9, 1], [1, 1, 1], bt, sliding_window=(-1, -1)))
    assert not is_plain_decode(metadata([5, 9, 1], [1, 1, 1], bt, causal=torch.ones(3, dtype=torch.int32)))


def plain_impl(**attrs):
    """An impl as vLLM's __init__ leaves it for a Qwen3-0.6B layer (built without a GPU)."""
    from vllm.v1.attention.backend import AttentionType

    from attnbench.kernels.vllm_backend import AttnbenchFA4Impl

    impl = AttnbenchFA4Impl.__new__(AttnbenchFA4Impl)
    fields = dict(attn_type=AttentionType.DECODER, sliding_window=(-1, -1), sinks=None,
                  logits_soft_cap=0, kv_cache_dtype="auto", head_size=128, num_heads=16,
                  num_kv_heads=8, num_queries_per_kv=2, scale=128 ** -0.5, max_batch=8,
                  max_context=600, decode_unsupported=None, vllm_config=None,
                  vllm_flash_attn_version=3)  # vLLM's pick on SM90
    for k, v in (fields | attrs).items():
        setattr(impl, k, v)
    return impl


@pytest.mark.parametrize("attrs, reason", [
    ({}, None),
    ({"sliding_window": (4095, 0)}, "sliding window"),
    ({"sinks": object()}, "sinks"),
    ({"logits_soft_cap": 30.0}, "soft-cap"),
    ({"kv_cache_dtype": "fp8"}, "fp8"),
    ({"head_size": 96}, "head_dim 96"),
    ({"num_queries_per_kv": 32}, "32 query heads"),
    ({"attn_type": "encoder_only"}, "attention type"),
])
def test_layers_our_kernel_cannot_compute_stay_on_flash_attention(vllm_registry, attrs, reason):
    why = plain_impl(**attrs)._why_not_ours()
    assert why is None if reason is None else reason in why


class ReferenceDecoder:
    """FA4Decode's call contract computed by the pure-torch algorithm, so the backend's wiring
    (cache split, slicing, plan from max_seq_len) is checked on CPU."""

    def __init__(self, kv_heads, page_size, num_sms=132):
        self.kv_heads, self.page_size, self.num_sms = kv_heads, page_size, num_sms
        self.calls = []

    def __call__(self, q, k_cache, v_cache, block_table, seq_lens, scale, out, max_context=None):
        from attnbench.kernels.fa4_decode import planner, reference

        p = planner.plan(q.shape[0], self.kv_heads, max_context, self.num_sms, self.page_size)
        self.calls.append((q.shape[0], max_context, p))
        parts = reference.split_decode(q, k_cache, v_cache, block_table, seq_lens, scale,
                                       p.num_splits, p.pages_per_split)
        out.copy_(reference.combine(*parts).to(out.dtype))
        return out


def test_decode_batch_reads_vllms_packed_cache_through_our_kernel(vllm_registry, monkeypatch):
    import torch

    from attnbench.kernels import vllm_backend
    from attnbench.kernels.fa4_decode import reference

    q_heads, kv_heads, dim, page, blocks = 8, 2, 64, 16, 12
    seq_lens = [1, 17, 40, 0]  # the last row is CUDA-graph padding
    g = torch.Generator().manual_seed(0)
    # vLLM's logical shape (blocks, kv_heads, page, 2*dim) over NHD memory, K and V packed
    physical = torch.randn(blocks, page, kv_heads, 2 * dim, generator=g).bfloat16()
    kv_cache = physical.permute(0, 2, 1, 3)
    block_table = torch.randperm(blocks, generator=g)[:12].reshape(4, 3).to(torch.int32)
    query = torch.randn(6, q_heads, dim, generator=g).bfloat16()  # 4 requests + 2 padded token rows
    output = torch.full((6, q_heads, dim), 7.0, dtype=torch.bfloat16)
    m = metadata(seq_lens, [1, 1, 1, 1], block_table)
    assert vllm_backend.is_plain_decode(m)

    impl = plain_impl(num_heads=q_heads, num_kv_heads=kv_heads, head_size=dim, scale=1 / math.sqrt(dim))
    fake = ReferenceDecoder(kv_heads, page)
    monkeypatch.setattr(vllm_backend, "decoder_for", lambda **kw: fake)
    impl.forward(None, query, None, None, kv_cache, m, output)

    k_cache, v_cache = physical[..., :dim], physical[..., dim:]
    want = reference.decode(query[:4], k_cache, v_cache, block_table, m.seq_lens, impl.scale)
    assert torch.allclose(output[:4].float(), want, atol=1e-2)  # bf16 rounding of the output
    assert torch.equal(output[3].float(), torch.zeros(q_heads, dim))  # padded request: zeros, no NaN
    assert torch.equal(output[4:].float(), torch.full((2, q_heads, dim), 7.0))  # padding rows untouched
    assert fake.calls[0][:2] == (4, 40)  # plan from the batch and max_seq_len


def test_other_batches_and_layers_go_to_flash_attention(vllm_registry, monkeypatch):
    import torch
    from vllm.v1.attention.backends.flash_attn import FlashAttentionImpl

    from attnbench.kernels import vllm_backend

    monkeypatch.setattr(FlashAttentionImpl, "forward", lambda self, *args: "flash-attention")
    monkeypatch.setattr(vllm_backend, "decoder_for", lambda **kw: pytest.fail("our kernel was called"))
    bt = torch.zeros(3, 4, dtype=torch.int32)
    q, out = torch.zeros(6, 16, 128), torch.zeros(6, 16, 128)
    mixed = metadata([5, 9, 4], [1, 1, 4], bt)
    decode = metadata([5, 9, 1], [1, 1, 1], bt)
    assert plain_impl().forward(None, q, None, None, None, mixed, out) == "flash-attention"
    assert plain_impl().forward(None, q, None, None, None, None, out) == "flash-attention"  # profiling run
    assert plain_impl(decode_unsupported="a sliding window").forward(None, q, None, None, None, decode, out) == "flash-attention"
    assert plain_impl(max_batch=2).forward(None, q, None, None, None, decode, out) == "flash-attention"
    assert plain_impl().forward(None, q.double(), None, None, None, decode, out) == "flash-attention"


@pytest.mark.gpu
def test_gpu_decode_through_the_backend_matches_the_float32_reference(vllm_registry):
    """The real FA4Decode behind the backend, on vLLM's packed bf16 cache, vs the oracle."""
    pytest.importorskip("cutlass")
    import torch

    from attnbench.kernels.fa4_decode import reference

    q_heads, kv_heads, dim, page, blocks = 16, 8, 128, 16, 1400
    lengths = [1, 37, 700, 4096, 0]  # 0: a CUDA-graph padding row
    g = torch.Generator(device="cuda").manual_seed(0)
    physical = torch.randn(blocks, page, kv_heads, 2 * dim, generator=g, device="cuda").bfloat16()
    kv_cache = physical.permute(0, 2, 1, 3)
    block_table = torch.randperm(blocks, generator=g, device="cuda")[:5 * 256].reshape(5, 256).to(torch.int32)
    query = torch.randn(5, q_heads, dim, generator=g, device="cuda").bfloat16()
    output = torch.full_like(query, float("nan"))
    m = metadata(lengths, [1] * 5, block_table)
    m.seq_lens, m.query_start_loc = m.seq_lens.cuda(), m.query_start_loc.cuda()

    impl = plain_impl(num_heads=q_heads, num_kv_heads=kv_heads, head_size=dim, scale=1 / math.sqrt(dim))
    impl._decode(query, kv_cache, m, output)
    torch.cuda.synchronize()

    want = reference.decode(query, physical[..., :dim], physical[..., dim:], block_table, m.seq_lens, impl.scale)
    assert not torch.isnan(output).any()
    err = (output.float() - want).norm() / want.norm()
    assert err <= TOLERANCE["bfloat16"], err


@pytest.mark.gpu
def test_gpu_decode_captured_in_a_cuda_graph_replays_new_lengths(vllm_registry):
    """As vLLM does it: an eager warm-up, capture with max_seq_len = max_model_len, then replays
    with other lengths and queries written into the same buffers."""
    pytest.importorskip("cutlass")
    import torch

    from attnbench.kernels.fa4_decode import reference

    q_heads, kv_heads, dim, page, batch, max_model_len = 16, 8, 128, 16, 4, 8192
    pages = max_model_len // page
    physical = torch.randn(batch * pages, page, kv_heads, 2 * dim, device="cuda").bfloat16()
    kv_cache = physical.permute(0, 2, 1, 3)
    block_table = torch.randperm(batch * pages, device="cuda").reshape(batch, pages).to(torch.int32)
    query = torch.randn(batch, q_heads, dim, device="cuda").bfloat16()
    output = torch.empty_like(query)
    m = metadata([max_model_len] * batch, [1] * batch, block_table)
    m.seq_lens = m.seq_lens.cuda()

    impl = plain_impl(num_heads=q_heads, num_kv_heads=kv_heads, head_size=dim,
                      scale=1 / math.sqrt(dim), max_batch=batch)
    impl._decode(query, kv_cache, m, output)  # warm-up: compile and allocate outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        impl._decode(query, kv_cache, m, output)

    for lengths in ([1, 2, 3, 4], [8192, 17, 0, 5000], [100, 100, 100, 8191]):
        m.seq_lens.copy_(torch.tensor(lengths, dtype=torch.int32))
        query.copy_(torch.randn_like(query))
        graph.replay()
        torch.cuda.synchronize()
        want = reference.decode(query, physical[..., :dim], physical[..., dim:], block_table,
                                m.seq_lens, impl.scale)
        err = (output.float() - want).norm() / want.norm()
        assert not torch.isnan(output).any() and err <= TOLERANCE["bfloat16"], (lengths, err)


def _serving_config(**over):
    """vLLM's config as the warm-up reads it (the fields it reads, nothing else)."""
    import torch

    ns = types.SimpleNamespace
    cfg = ns(compilation_config=ns(cudagraph_capture_sizes=[1, 2, 4, 8], max_cudagraph_capture_size=8, compile_sizes=[]),
             scheduler_config=ns(max_num_seqs=8, max_num_batched_tokens=64),
             model_config=ns(max_model_len=600, dtype=torch.bfloat16), cache_config=ns(block_size=16))
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


@pytest.mark.parametrize("fa_version", [3, 4])
def test_start_up_warmup_asks_vllm_to_compile_our_decode_and_fa4_prefill(vllm_registry, monkeypatch, fa_version):
    """Through vLLM's own CuTe DSL warm-up registry: the layer registers, vLLM collects its units,
    and running them asks for exactly our decode configurations, and the FA4 probes where prefill
    runs on FA4 (FA3 is compiled ahead of time: nothing to ask for)."""
    import vllm.config
    from vllm.model_executor.warmup import cutedsl_warmup

    from attnbench.kernels import vllm_backend, warmup
    from attnbench.kernels.fa4_decode import launcher, tuning

    monkeypatch.delenv(tuning.ENV, raising=False)
    config = _serving_config()
    # vLLM runs the warm-up with no current config: the layer must use the one it was built under
    monkeypatch.setattr(vllm.config, "get_current_vllm_config_or_none", lambda: None)
    asked = []
    monkeypatch.setattr(launcher, "compile_decode", lambda cfg, arch: asked.append(("decode", cfg)))
    monkeypatch.setattr(launcher, "compile_combine", lambda cfg, arch: asked.append(("decode", cfg)))
    monkeypatch.setattr(vllm_backend.AttnbenchFA4Impl, "_compile_fa4",
                        lambda self, probe, layer, dtype: asked.append(("prefill", probe)))
    impl = plain_impl(num_heads=16, num_kv_heads=8, head_size=128, vllm_config=config, vllm_flash_attn_version=fa_version)
    monkeypatch.setattr(cutedsl_warmup, "_CUTEDSL_WARMUP_PROVIDERS", __import__("weakref").WeakSet())
    impl._register_warmup()
    units = cutedsl_warmup._collect_unique_compile_units(cutedsl_warmup._iter_cutedsl_warmup_compile_units())
    for unit in units:
        unit.compile()

    limits = vllm_backend.server_limits(config)
    assert limits == warmup.ServerLimits((1, 2, 4, 8), max_batch=8, max_model_len=600, max_num_batched_tokens=64)
    want_decode = launcher.kernel_configs(q_heads=16, kv_heads=8, head_dim=128, page_size=16, dtype="bfloat16",
                                          max_batch=8, max_context=600)
    assert [x for kind, x in asked if kind == "decode"] == want_decode
    if fa_version == 4:
        assert [x for kind, x in asked if kind == "prefill"] == warmup.prefill_probes(limits)
        assert {u.name for u in units} == {"attnbench_fa4_decode", "attnbench_fa4_fa4_prefill"}
    else:
        assert {u.name for u in units} == {"attnbench_fa4_decode"}

    # a second layer of the same geometry adds nothing: vLLM dedups by key
    other = plain_impl(num_heads=16, num_kv_heads=8, head_size=128, vllm_config=config, vllm_flash_attn_version=fa_version)
    other._register_warmup()
    again = cutedsl_warmup._collect_unique_compile_units(cutedsl_warmup._iter_cutedsl_warmup_compile_units())
    assert len(again) == len(units)


def test_a_layer_fa4_decodes_warms_up_fa4_only(vllm_registry, monkeypatch):
    """With vLLM configured for FA4 and a sliding window (which ours does not take)."""
    import vllm.config

    from attnbench.kernels.fa4_decode import tuning

    monkeypatch.delenv(tuning.ENV, raising=False)
    monkeypatch.setattr(vllm.config, "get_current_vllm_config_or_none", lambda: None)
    impl = plain_impl(num_heads=16, num_kv_heads=8, head_size=128, sliding_window=(127, 0),
                      decode_unsupported="a sliding window", vllm_config=_serving_config(), vllm_flash_attn_version=4)
    units = impl.get_cutedsl_warmup_compile_units()
    assert units and {u.name for u in units} == {"attnbench_fa4_fa4_prefill"}
    assert all(u.key[2].fa4_variant[0] == (127, 0) for u in units)


@pytest.mark.gpu
def test_gpu_fa4_prefill_compiled_at_start_up_is_not_compiled_again_when_served(vllm_registry):
    """The warm-up compiles FA4 on fake tensors; the same call shapes on real tensors (what a
    prefill or mixed batch runs) must then find every kernel in FA4's cache."""
    import torch
    from vllm.v1.attention.backends.fa_utils import flash_attn_varlen_func
    from vllm.vllm_flash_attn.cute import interface

    from attnbench.kernels import warmup

    impl = plain_impl(num_heads=16, num_kv_heads=8, head_size=128, scale=128 ** -0.5, sliding_window=(-1, -1),
                      logits_soft_cap=0, sinks=None, vllm_flash_attn_version=4)
    layer = impl.warmup_layer(16, torch.bfloat16)
    probes = [warmup.PrefillProbe(1, 300, 300), warmup.PrefillProbe(1, 2, 4096), warmup.PrefillProbe(1, 64, 600)]
    for probe in probes:
        impl._compile_fa4(probe, layer, torch.bfloat16)

    def cached_keys():  # FA4's JITCache keeps its compiled kernels in a dict, .cache
        return [set(f.compile_cache.cache) for f in (interface._flash_attn_fwd, interface._flash_attn_fwd_combine)]

    compiled = cached_keys()
    assert compiled[0], "the warm-up compiled no FA4 prefill kernel"
    for probe in probes:  # the same shapes, real tensors, run for real
        n, d, page = probe.num_reqs, 128, 16
        pages = -(-probe.max_seqlen_k // page)
        physical = torch.randn(n * pages, page, 8, 2 * d, device="cuda").bfloat16()
        key_cache, value_cache = physical.permute(0, 2, 1, 3).transpose(1, 2).split(d, dim=-1)
        q = torch.randn(probe.max_seqlen_q, 16, d, device="cuda").bfloat16()
        flash_attn_varlen_func(
            q=q, k=key_cache, v=value_cache, out=torch.empty_like(q),
            cu_seqlens_q=torch.tensor([0, probe.max_seqlen_q], dtype=torch.int32, device="cuda"),
            max_seqlen_q=probe.max_seqlen_q, seqused_k=torch.tensor([probe.max_seqlen_k], dtype=torch.int32, device="cuda"),
            max_seqlen_k=probe.max_seqlen_k, softmax_scale=impl.scale, causal=True, window_size=[-1, -1],
            block_table=torch.arange(pages, dtype=torch.int32, device="cuda")[None], softcap=0, fa_version=4, num_splits=0)
    torch.cuda.synchronize()
    assert cached_keys() == compiled
