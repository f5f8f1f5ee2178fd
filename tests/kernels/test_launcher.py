"""The attnbench-fa4 CuTe DSL kernels: they compile for sm_90a without a GPU (here), and on the
GPU they match the float32 reference, write every output element, and replay in a CUDA graph."""

import os
import re
from dataclasses import replace

import pytest

pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl not installed")

from attnbench.kernels.fa4_decode.config import CombineConfig, DecodeConfig
from attnbench.microbench.base import DecodeShape
from attnbench.microbench.check import TOLERANCE

# --- compile on this machine (no GPU needed) ------------------------------------------------------

def _compiler():
    pytest.importorskip("cutlass")
    pytest.importorskip("tvm_ffi")
    from attnbench.kernels.fa4_decode import launcher

    return launcher


def _ptx(tmp_path, monkeypatch, compile_fn, cfg) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("ATTNBENCH_FA4_COMPILE_OPTIONS", f"--keep-ptx --dump-dir {tmp_path}")
    compile_fn.__wrapped__(cfg, "sm_90a")  # bypass the in-process cache: we want the files
    ptx = [p for p in tmp_path.rglob("*.ptx")]
    assert ptx, f"no PTX written under {tmp_path}: {os.listdir(tmp_path)}"
    return "\n".join(p.read_text() for p in ptx)


def test_split_decode_kernel_compiles_for_sm90a_with_128_bit_loads(tmp_path, monkeypatch):
    launcher = _compiler()
    cfg = DecodeConfig("bfloat16", 128, group=2, page_size=16, write_final=False)
    ptx = _ptx(tmp_path, monkeypatch, launcher.compile_decode, cfg)
    assert ".target sm_90a" in ptx
    # q (2 heads) + tokens_per_thread K rows + as many V rows, each one 16-byte load per lane
    assert len(re.findall(r"ld\.global[.\w]*\.v4\.b32", ptx)) == 2 + 2 * cfg.tokens_per_thread
    assert "ex2.approx" in ptx and "shfl.sync.bfly" in ptx
    # the split variant writes fp32 partials and LSEs, never the 16-bit output
    assert "st.global.b16" not in ptx and re.search(r"st\.global\.[bf]32", ptx)


def test_pipelined_variant_issues_three_load_sites_of_double_buffered_rows(tmp_path, monkeypatch):
    launcher = _compiler()
    cfg = DecodeConfig("bfloat16", 128, group=2, page_size=16, write_final=False, num_threads=128,
                       tokens_per_thread=2, pipeline=True)
    ptx = _ptx(tmp_path, monkeypatch, launcher.compile_decode, cfg)
    # q, then the prologue load and the two in-loop loads (one per buffer), each of T K + T V rows
    assert len(re.findall(r"ld\.global[.\w]*\.v4\.b32", ptx)) == 2 + 3 * 2 * cfg.tokens_per_thread


def test_smem_ring_variant_streams_through_cp_async(tmp_path, monkeypatch):
    launcher = _compiler()
    cfg = DecodeConfig("bfloat16", 128, group=2, page_size=16, write_final=False, num_threads=128,
                       tokens_per_thread=2, smem_stages=3)
    ptx = _ptx(tmp_path, monkeypatch, launcher.compile_decode, cfg)
    # S-1 prologue steps + 1 refill in the loop, each T K rows + T V rows of 16 bytes
    assert len(re.findall(r"cp\.async\.cg\.shared\.global \[[^]]+\], \[[^]]+\], 16", ptx)) == 3 * 2 * 2
    assert "cp.async.wait_group \t2;" in ptx or "cp.async.wait_group 2;" in ptx
    assert len(re.findall(r"ld\.global[.\w]*\.v4\.b32", ptx)) == 2  # only q goes through registers


def test_final_variant_and_combine_compile_for_fp16_head_dim_64(tmp_path, monkeypatch):
    launcher = _compiler()
    ptx = _ptx(tmp_path / "dec", monkeypatch, launcher.compile_decode,
               DecodeConfig("float16", 64, group=4, page_size=64, write_final=True))
    assert "st.global.b16" in ptx or "st.global.u16" in ptx
    ptx = _ptx(tmp_path / "comb", monkeypatch, launcher.compile_combine, CombineConfig("float16", 64, 64))
    assert "shfl.sync.bfly" in ptx


@pytest.mark.parametrize("mma", [False, True])
def test_pdl_waits_on_the_kernel_before_any_global_access_and_lets_the_combine_launch_early(
        tmp_path, monkeypatch, mma):
    launcher = _compiler()
    tune = {"num_threads": 128, "tokens_per_thread": 1, "smem_stages": 3, "mma": True} if mma else {}
    plain = DecodeConfig("bfloat16", 128, group=2, page_size=16, write_final=False, **tune)
    assert "griddepcontrol" not in _ptx(tmp_path / "plain", monkeypatch, launcher.compile_decode, plain)
    ptx = _ptx(tmp_path / "pdl", monkeypatch, launcher.compile_decode, replace(plain, pdl=True))
    body = ptx[ptx.index(".entry"):]
    wait, trigger = body.index("griddepcontrol.wait"), body.index("griddepcontrol.launch_dependents")
    assert wait < body.index("ld.global") and wait < trigger  # nothing read before the kernel before it is done
    assert body.count("griddepcontrol.wait") == 1 and body.count("griddepcontrol.launch_dependents") == 1
    comb = _ptx(tmp_path / "comb", monkeypatch, launcher.compile_combine, CombineConfig("bfloat16", 128, 64, pdl=True))
    body = comb[comb.index(".entry"):]
    assert body.index("griddepcontrol.wait") < body.index("ld.global") and "launch_dependents" not in body


@pytest.mark.parametrize("row_warps", [1, 2, 4])
def test_combine_shares_a_row_among_row_warps_warps_through_shared_memory(tmp_path, monkeypatch, row_warps):
    launcher = _compiler()
    cfg = CombineConfig("bfloat16", 128, 64, row_warps=row_warps)
    ptx = _ptx(tmp_path, monkeypatch, launcher.compile_combine, cfg)
    body = ptx[ptx.index(".entry"):]
    assert ("bar.sync" in body or "barrier.sync" in body) == (row_warps > 1)  # the one CTA-wide sync: the sum
    assert cfg.smem_bytes() == 4 * 4 * 32 * 2 + (4 * 4 * 128 if row_warps > 1 else 0)
    with pytest.raises(ValueError, match="row_warps must divide"):
        CombineConfig("bfloat16", 128, 64, row_warps=3)


def test_a_refined_tuning_reaches_both_kernels_and_its_combine():
    from attnbench.kernels.fa4_decode import launcher, tuning

    t = tuning.Tuning.parse("num_threads=128,tokens_per_thread=1,ctas_per_sm=2,smem_stages=3,mma=1,pdl=1,combine_warps=4")
    assert t.pdl and t.combine_warps == 4 and tuning.Tuning.parse(t.spec()) == t
    final, split = launcher.decode_configs(t, dtype="bfloat16", head_dim=128, group=2, page_size=16)
    assert final.pdl and split.pdl
    cfgs = launcher.kernel_configs(q_heads=16, kv_heads=8, head_dim=128, page_size=16, dtype="bfloat16",
                                   max_batch=8, max_context=2048, fixed=t)
    assert [c for c in cfgs if isinstance(c, CombineConfig)] == [CombineConfig("bfloat16", 128, 64, pdl=True, row_warps=4)]


# --- the tensor-core kernel (kernel_mma.py): its fragment views, and a compile per shape class ------

def test_mma_fragment_views_match_cutes_partitions_for_every_lane():
    """kernel_mma reinterprets two MMA fragments itself: the accumulator as (row, col) for the
    online softmax, and S's accumulator as P, the A operand of P . V. Both are checked here,
    lane by lane, against the (m, n) / (m, k) coordinates CuTe's own partitions give each
    register: a wrong view would pass every compile and give plausible wrong numbers on the GPU."""
    pytest.importorskip("tvm_ffi")
    import cutlass
    from cutlass import Float32, cute

    from attnbench.kernels.fa4_decode import kernel_mma as km

    found = []

    @cute.jit
    def probe():
        mma = km.tiled_mma(cutlass.BFloat16)
        for lane in cutlass.range_constexpr(32):
            thr = mma.get_slice(lane)
            for n in (16, 32, 64, 128):  # S tiles (16 at D128, 32 at D64) and O accumulators (64, 128)
                acc = cute.make_rmem_tensor(thr.partition_shape_C((km.M, n)), Float32)
                coord = thr.partition_C(cute.make_identity_tensor((km.M, n)))
                rc = km.acc_rows_cols(acc.shape)
                for r in cutlass.range_constexpr(2):
                    for c in cutlass.range_constexpr(cute.size(rc, mode=[1])):
                        found.append(("row/col", lane, n, coord[rc((r, c))], (lane // 4 + 8 * r, km.acc_col(lane, c))))
                if cutlass.const_expr(n <= 32):
                    a_shape = thr.partition_shape_A((km.M, n))
                    a_coord = thr.partition_A(cute.make_identity_tensor((km.M, n)))
                    as_a = km.acc_as_a(a_shape)
                    for j in cutlass.range_constexpr(cute.size(a_coord)):
                        found.append(("P as A", lane, n, coord[as_a(j)], a_coord[j]))
            # compact fragments: register j of a fragment is its logical element j
            assert cute.make_rmem_tensor(thr.partition_shape_C((km.M, 16)), Float32).layout == \
                cute.make_layout(thr.partition_shape_C((km.M, 16)))

    cute.compile(probe, options="--gpu-arch sm_90a")
    assert len(found) == 32 * (2 * (16 + 32 + 64 + 128) // 4 + (16 + 32) * 16 // 32)
    assert all(isinstance(x, int) for *_, got, want in found for x in (*got, *want))  # static, compared as ints
    wrong = [f for f in found if tuple(f[3]) != tuple(f[4])]
    assert not wrong, wrong[:4]


@pytest.mark.filterwarnings("ignore::cutlass.base_dsl.ast_helpers.DSLOptimizationWarning")  # the probe's long static loops run at trace time only
@pytest.mark.parametrize("d", [64, 128])
def test_mma_smem_tiles_are_a_bijection_of_16_byte_chunks_and_v_transposed_is_the_same_bytes(d):
    """cp.async writes and ldmatrix reads 16-byte chunks of the swizzled (token, d, slot) ring:
    every chunk must be 8 contiguous elements, no two elements may share an offset, and the
    (d, token, slot) view P . V reads must address exactly the bytes of (token, d, slot)."""
    pytest.importorskip("tvm_ffi")
    import cutlass
    from cutlass import cute

    from attnbench.kernels.fa4_decode import kernel_mma as km

    tn, slots = 2048 // d, 3
    seen = {}

    @cute.jit
    def probe():
        tiles = km.swizzled_tiles(tn, d, slots)
        vt = cute.composition(tiles, cute.make_layout((d, tn, slots), stride=(tn, 1, tn * d)))
        for s in cutlass.range_constexpr(slots):
            for t in cutlass.range_constexpr(tn):
                for x in cutlass.range_constexpr(d):
                    seen[(t, x, s)] = (tiles((t, x, s)), vt((x, t, s)))

    cute.compile(probe, options="--gpu-arch sm_90a")
    offsets = [a for a, _ in seen.values()]
    assert sorted(offsets) == list(range(tn * d * slots))  # a bijection onto the ring
    assert all(a == b for a, b in seen.values())  # V^T is a view of the same bytes
    for (t, x, s), (a, _) in seen.items():
        if x % 8:
            assert a == seen[(t, x - 1, s)][0] + 1  # chunks stay contiguous under the swizzle
    # the 8 rows one ldmatrix reads at one 16-byte column land in 8 different 16-byte bank groups
    for x in range(0, d, 8):
        assert len({(seen[(t, x, 0)][0] // 8) % 8 for t in range(8)}) == 8


# (group, head_dim, page_size, dtype, write_final): every group 4..8, 16 and 1 with both head dims,
# both page sizes (16 at D64 is the per-row page lookup of a 32-token tile), both dtypes and both
# output kinds at least once each
MMA_CLASSES = [(4, 128, 16, "bfloat16", False), (4, 64, 128, "float16", True), (5, 128, 128, "float16", False),
               (5, 64, 16, "bfloat16", True), (6, 128, 16, "float16", True), (6, 64, 128, "bfloat16", False),
               (7, 128, 128, "bfloat16", True), (7, 64, 16, "float16", False), (8, 128, 16, "bfloat16", False),
               (8, 64, 16, "float16", True), (8, 128, 128, "float16", True), (8, 64, 128, "bfloat16", False),
               (16, 128, 16, "bfloat16", False), (4, 128, 8, "bfloat16", False), (1, 128, 16, "float16", True)]


def _sass(tmp_path) -> str | None:
    """The SASS of the cubins under tmp_path, if nvdisasm is around (it ships in the CUDA wheels)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    tool = shutil.which("nvdisasm") or next(iter(Path(sys.prefix).glob("lib/python*/site-packages/nvidia/*/bin/nvdisasm")), None)
    if tool is None:
        return None
    return "\n".join(subprocess.run([str(tool), "-c", str(c)], capture_output=True, text=True).stdout
                     for c in tmp_path.rglob("*.cubin"))


@pytest.mark.parametrize("group, d, page, dtype, final", MMA_CLASSES)
def test_mma_kernel_compiles_to_tensor_core_streams_for_its_shape_classes(tmp_path, monkeypatch, group, d, page,
                                                                         dtype, final):
    launcher = _compiler()
    cfg = DecodeConfig(dtype, d, group=group, page_size=page, write_final=final, num_threads=128,
                       tokens_per_thread=1, smem_stages=3, mma=True)
    monkeypatch.setenv("ATTNBENCH_FA4_COMPILE_OPTIONS", f"--keep-ptx --keep-cubin --dump-dir {tmp_path}")
    launcher.compile_decode.__wrapped__(cfg, "sm_90a")
    ptx = "\n".join(p.read_text() for p in tmp_path.rglob("*.ptx"))
    tn = cfg.mma_tile_tokens
    assert ".target sm_90a" in ptx
    # per tile: (D/16 k steps x TN/8 atoms) for Q.K^T + (TN/16 x D/8) for P.V, every lane of the group at once
    assert len(re.findall(r"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32", ptx)) == 2 * d * tn // 128 == 32
    # ldmatrix: Q once (D/16), K per k step (D/16 x TN/16); V transposed (TN/16 x D/16)
    assert len(re.findall(r"ldmatrix\.sync\.aligned\.m8n8\.x4\.shared", ptx)) == d // 16 + d * tn // 256
    assert len(re.findall(r"ldmatrix\.sync\.aligned\.m8n8\.x4\.trans\.shared", ptx)) == d * tn // 256
    # K and V stream only through cp.async: S-1 prologue tiles + 1 refill, each 8 + 8 chunks per lane
    assert len(re.findall(r"cp\.async\.cg\.shared\.global \[[^]]+\], \[[^]]+\], 16", ptx)) == 3 * 2 * tn * d // 256
    assert "cp.async.wait_group 2;" in ptx or "cp.async.wait_group \t2;" in ptx
    if final:
        assert "st.global.b16" in ptx or "st.global.u16" in ptx
    else:
        assert "st.global.b16" not in ptx and re.search(r"st\.global\.[bf]32", ptx)
    sass = _sass(tmp_path)
    if sass is not None:  # registers only: a spill to local memory would be a slow kernel, not a wrong one
        assert "HMMA" in sass and not re.search(r"\b(STL|LDL)\b", sass)


# --- on the GPU ------------------------------------------------------------------------------------

GPU_SHAPES = [
    # batch, context lens, q_heads, kv_heads, head_dim, page, dtype, forced splits
    (1, (1,), 16, 8, 128, 16, "bfloat16", None),
    (4, (17, 1, 33, 1000), 16, 8, 128, 16, "bfloat16", None),
    (4, (17, 1, 33, 1000), 16, 8, 128, 16, "bfloat16", 7),
    (3, (2048, 5, 700), 32, 8, 64, 64, "float16", None),
    (2, (4096, 100), 8, 8, 128, 16, "bfloat16", 64),
    (32, tuple(range(1, 64 * 32, 64)), 16, 8, 128, 16, "float16", None),
]


def _inputs(batch, lens, hq, hkv, d, page, dtype, seed=0):
    from attnbench.microbench.inputs import decode_inputs

    return decode_inputs(DecodeShape(batch=batch, context_lens=lens, q_heads=hq, kv_heads=hkv,
                                     head_dim=d, page_size=page, dtype=dtype), device="cuda", seed=seed)


def _rel_err(out, ref):
    return float((out.float() - ref).norm() / ref.norm().clamp_min(1e-6))


VARIANTS = {"default": {}, "pipelined": {"num_threads": 128, "tokens_per_thread": 2, "pipeline": True},
            "smem": {"num_threads": 128, "tokens_per_thread": 2, "smem_stages": 3}}


def _matches_reference(batch, lens, hq, hkv, d, page, dtype, splits, tuning: dict) -> None:
    """FA4Decode with `tuning` against the float32 reference: every output element written (the
    output starts poisoned with NaN) and within the dtype's tolerance."""
    from attnbench.kernels.fa4_decode import reference
    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    inp = _inputs(batch, lens, hq, hkv, d, page, dtype)
    dec = FA4Decode(q_heads=hq, kv_heads=hkv, head_dim=d, page_size=page, dtype=dtype, max_batch=batch, **tuning)
    dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out,
        max_context=max(lens), num_splits=splits)
    ref = reference.decode(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale)
    assert not inp.out.isnan().any(), "poisoned (NaN) output elements were left unwritten"
    assert _rel_err(inp.out, ref) <= TOLERANCE[dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("batch, lens, hq, hkv, d, page, dtype, splits", GPU_SHAPES)
def test_matches_float32_reference_and_writes_every_element(batch, lens, hq, hkv, d, page, dtype, splits, variant):
    _matches_reference(batch, lens, hq, hkv, d, page, dtype, splits, VARIANTS[variant])


def _replayed(q_heads: int, head_dim: int, new_lens: list[int], **tuning):
    """Capture a split decode of 8 sequences of 300 tokens (split kernel and combine) in a CUDA
    graph, replay it with `new_lens` and a NaN-poisoned output; (output, float32 reference)."""
    import torch

    from attnbench.kernels.fa4_decode import reference
    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    inp = _inputs(8, (300,) * 8, q_heads, 8, head_dim, 16, "bfloat16")
    dec = FA4Decode(q_heads=q_heads, kv_heads=8, head_dim=head_dim, page_size=16, dtype="bfloat16", max_batch=8,
                    **tuning).compile()
    call = lambda: dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out,  # noqa: E731
                       max_context=300)
    assert dec.plan(8, 300).num_splits > 1  # the graph holds the split kernel and the combine
    call()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    inp.seq_lens.copy_(torch.tensor(new_lens, dtype=torch.int32))
    inp.out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    return inp.out, reference.decode(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale)


@pytest.mark.gpu
def test_cuda_graph_replay_follows_new_lengths_without_recapture():
    out, ref = _replayed(16, 128, [1, 16, 17, 100, 255, 256, 299, 300])
    assert not out.isnan().any()
    assert _rel_err(out, ref) <= TOLERANCE["bfloat16"]


@pytest.mark.gpu
@pytest.mark.parametrize("splits", [1, 3])
def test_a_plan_for_shorter_contexts_is_still_exact(splits):
    """The last split runs to each sequence's end, so a stale plan (graph captured at a smaller
    max_context) costs speed, not correctness."""
    from attnbench.kernels.fa4_decode import reference
    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    inp = _inputs(3, (300, 17, 1000), 16, 8, 128, 16, "bfloat16")
    dec = FA4Decode(q_heads=16, kv_heads=8, head_dim=128, page_size=16, dtype="bfloat16", max_batch=3)
    dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out,
        max_context=64, num_splits=splits)
    ref = reference.decode(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale)
    assert not inp.out.isnan().any() and _rel_err(inp.out, ref) <= TOLERANCE["bfloat16"]


@pytest.mark.gpu
def test_a_plan_for_the_longest_context_spreads_a_short_sequence_over_every_split():
    """As vLLM captures decode graphs (max_seq_len = max_model_len): the split count is sized for
    32768 tokens, and the kernel cuts each sequence's own pages into that many even ranges on the
    device, exactly as reference.split_decode(pages_per_split=None) does, instead of leaving a
    1500-token sequence to the first 3 of 64 splits."""
    import torch

    from attnbench.kernels.fa4_decode import reference
    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    inp = _inputs(2, (1500, 40), 16, 8, 128, 16, "bfloat16")
    dec = FA4Decode(q_heads=16, kv_heads=8, head_dim=128, page_size=16, dtype="bfloat16", max_batch=2)
    n = dec.plan(2, 32768).num_splits
    assert n > 40  # more splits than the 3 pages of the short sequence: some of its splits stay empty
    dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out, max_context=32768)
    torch.cuda.synchronize()
    _, want = reference.split_decode(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens,
                                     inp.scale, n, None)
    got = dec.lse_partial[:n, :2].float()
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))  # the same splits hold work
    assert torch.isfinite(got[:, 0]).all(dim=-1).sum() == -(-94 // -(-94 // n))  # 94 pages, even ranges
    assert torch.allclose(got[torch.isfinite(got)], want[torch.isfinite(want)], atol=2e-2)
    ref = reference.decode(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale)
    assert _rel_err(inp.out, ref) <= TOLERANCE["bfloat16"]


@pytest.mark.gpu
def test_zero_length_padding_rows_write_zeros():
    import torch

    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    inp = _inputs(4, (64,) * 4, 16, 8, 128, 16, "bfloat16")
    inp.seq_lens.copy_(torch.tensor([64, 0, 64, 0], dtype=torch.int32))
    dec = FA4Decode(q_heads=16, kv_heads=8, head_dim=128, page_size=16, dtype="bfloat16", max_batch=4)
    for splits in (1, 4):
        inp.out.fill_(float("nan"))
        dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out,
            max_context=64, num_splits=splits)
        torch.cuda.synchronize()
        assert not inp.out.isnan().any()
        assert (inp.out[1] == 0).all() and (inp.out[3] == 0).all()


@pytest.mark.gpu
def test_rejects_sliding_window_sinks_and_oversized_batch():
    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    inp = _inputs(2, (10, 20), 16, 8, 128, 16, "bfloat16")
    dec = FA4Decode(q_heads=16, kv_heads=8, head_dim=128, page_size=16, dtype="bfloat16", max_batch=1)
    args = (inp.q[:1], inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out[:1])
    with pytest.raises(ValueError, match="sliding-window"):
        dec(*args, window=(128, 0))
    with pytest.raises(ValueError, match="sink"):
        dec(*args, sinks=inp.q.new_zeros(16))
    with pytest.raises(ValueError, match="max_batch"):
        dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out)


# --- the tensor-core kernel on the GPU ---------------------------------------------------------------

MMA = {"num_threads": 128, "tokens_per_thread": 1, "ctas_per_sm": 2, "smem_stages": 3, "mma": True}
MMA_GPU_SHAPES = [
    # batch, context lens, q_heads, kv_heads, head_dim, page, dtype, forced splits
    (1, (1,), 32, 8, 128, 16, "bfloat16", None),  # one token: 15 of the tile's 16 columns masked
    (4, (17, 1, 33, 1000), 32, 8, 128, 16, "bfloat16", None),  # group 4
    (4, (17, 1, 33, 1000), 64, 8, 64, 16, "float16", 7),  # group 8, D64: 32-token tiles over 16-token pages
    (3, (2048, 5, 700), 40, 8, 128, 128, "bfloat16", None),  # group 5
    (2, (4096, 100), 48, 8, 64, 128, "float16", 64),  # group 6, more splits than a short sequence has tiles
    (2, (999, 3000), 56, 8, 128, 8, "bfloat16", 3),  # group 7, pages smaller than a tile
    (32, tuple(range(1, 64 * 32, 64)), 64, 8, 128, 16, "bfloat16", None),  # group 8, D128, ragged
    (2, (300, 77), 32, 2, 128, 16, "float16", None),  # group 16: every row of the MMA tile is a head
]


@pytest.mark.gpu
@pytest.mark.parametrize("stages, threads", [(3, 128), (2, 64)])
@pytest.mark.parametrize("batch, lens, hq, hkv, d, page, dtype, splits", MMA_GPU_SHAPES)
def test_mma_kernel_matches_float32_reference_and_writes_every_element(batch, lens, hq, hkv, d, page, dtype,
                                                                       splits, stages, threads):
    _matches_reference(batch, lens, hq, hkv, d, page, dtype, splits, MMA | {"smem_stages": stages, "num_threads": threads})


@pytest.mark.gpu
@pytest.mark.parametrize("hq, d, page", [(32, 128, 16), (64, 64, 16), (64, 128, 128)])
def test_mma_split_partials_and_lses_are_the_ones_the_combine_reads(hq, d, page):
    """The mma kernel writes the same workspace as kernel.py: per split, the normalised partial
    output and its natural-log LSE, -inf for an empty split (compared with reference.split_decode)."""
    import torch

    from attnbench.kernels.fa4_decode import reference
    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    inp = _inputs(3, (1500, 40, 1), hq, 8, d, page, "bfloat16")
    dec = FA4Decode(q_heads=hq, kv_heads=8, head_dim=d, page_size=page, dtype="bfloat16", max_batch=3, **MMA)
    n = dec.plan(3, 32768).num_splits
    dec.lse_partial.fill_(float("nan"))
    dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out, max_context=32768)
    torch.cuda.synchronize()
    want_o, want_lse = reference.split_decode(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens,
                                              inp.scale, n, None)
    got_lse = dec.lse_partial[:n, :3].float()
    assert torch.equal(torch.isfinite(got_lse), torch.isfinite(want_lse))  # the same splits hold work
    fin = torch.isfinite(want_lse)
    assert torch.allclose(got_lse[fin], want_lse[fin], atol=2e-2)
    got_o = dec.out_partial[:n, :3][fin]
    assert float((got_o - want_o[fin]).norm() / want_o[fin].norm()) <= TOLERANCE["bfloat16"]
    ref = reference.decode(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale)
    assert _rel_err(inp.out, ref) <= TOLERANCE["bfloat16"]


REFINEMENTS = {"pdl": {"pdl": True}, "combine4": {"combine_warps": 4}, "combine2-pdl": {"combine_warps": 2, "pdl": True}}


@pytest.mark.gpu
@pytest.mark.parametrize("refinement", REFINEMENTS)
@pytest.mark.parametrize("mma", [False, True])
def test_launch_and_combine_refinements_are_exact_alone_and_replayed_in_a_cuda_graph(mma, refinement):
    tune = (MMA if mma else VARIANTS["smem"]) | REFINEMENTS[refinement]
    for splits in (7, 64):  # a split count the combine's warps share unevenly, and the workspace's capacity
        _matches_reference(4, (17, 1, 33, 1000), 16, 8, 128, 16, "bfloat16", splits, tune)
    out, ref = _replayed(16, 128, [1, 16, 17, 100, 255, 256, 299, 300], **tune)
    assert not out.isnan().any()
    assert _rel_err(out, ref) <= TOLERANCE["bfloat16"]


@pytest.mark.gpu
def test_mma_kernel_replays_in_a_cuda_graph_and_writes_zeros_for_padding_rows():
    out, ref = _replayed(64, 64, [1, 16, 0, 100, 255, 0, 299, 300], **MMA)
    assert not out.isnan().any() and (out[2] == 0).all() and (out[5] == 0).all()
    assert _rel_err(out, ref) <= TOLERANCE["bfloat16"]
