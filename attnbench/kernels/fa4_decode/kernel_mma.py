"""The split-KV paged decode kernel on tensor cores (CuTe DSL, SM80+ mma.sync): one CTA per
(kv_head, split, sequence), as kernel.py, for wide GQA groups.

With 4-16 query heads per KV head the CUDA-core kernel keeps q and the accumulator of the whole
group in every lane's registers, and issues group x 16 FMAs per 16 bytes of K/V. Here the group is
the M side of a GEMM: per warp step of TN tokens (TN = 2048 / head_dim, 8 KB of K+V)

    S[16 x TN] = Q[16 x D] . K[TN x D]^T      (mma.sync m16n8k16; heads on M, padded to 16)
    online softmax on S in registers           (row max / sum over a quad: 2 shuffles)
    O[16 x D] += P[16 x TN] . V[TN x D]        (P converted in registers to the A operand)

so the work per byte no longer grows with the group and the kernel is a memory stream again.

Streaming: each warp owns every W-th tile of the split and its own S-stage ring of swizzled
(token, D) tiles in shared memory, filled by cp.async S-1 tiles ahead. A warp reads back only
tiles it copied itself (ldmatrix for K, ldmatrix.trans for V), so `cp.async.wait_group` and
`__syncwarp` are its only synchronisation; the warps meet once, at the end, to merge their
partial softmaxes through shared memory (reusing the ring) and write the same outputs as
kernel.py: the final output when num_splits == 1, else fp32 partials and natural-log LSEs for
combine.py.

Fragment layouts are CuTe's (partition_A/B/C of the MMA atom); the two places this file
reinterprets a fragment itself (`acc_rows_cols`, `acc_as_a`) are checked against CuTe's
partitions on the CPU by tests/kernels/test_launcher.py.
"""

from __future__ import annotations

import math

import cutlass
from cutlass import Float32, Int32, const_expr, cute
from cutlass.cute.nvgpu import cpasync, warp

from attnbench.kernels.fa4_decode.config import DecodeConfig
from attnbench.kernels.fa4_decode.kernel import cutlass_dtype, merge_and_write, split_tokens

M = 16  # rows of the MMA tile: the group's query heads, zero-padded
VEC = 8  # 16-bit elements per 16-byte cp.async


def tiled_mma(dtype):
    """One warp, 16 x 16 x 16 per step (two n8 atoms side by side, so ldmatrix.x4 fills B)."""
    return cute.make_tiled_mma(warp.MmaF16BF16Op(dtype, Float32, (16, 8, 16)), (1, 1, 1),
                               permutation_mnk=(M, 16, 16))


def acc_rows_cols(acc_layout_shape) -> cute.Layout:
    """(row, col) view of an accumulator fragment of shape ((2, 2), 1, N8) (compact, as
    make_rmem_tensor builds it): row r in {0, 1} is the lane's row lane/4 + 8r; col c is column
    2 * (lane % 4) + c % 2 + 8 * (c // 2) of the tile (`acc_col`)."""
    n8 = acc_layout_shape[2]
    return cute.make_layout((2, (2, n8)), stride=(2, (1, 4)))


def acc_col(lane, c: int):
    """Tile column of element c of a lane's (row, col) view (see acc_rows_cols)."""
    return 2 * (lane % 4) + c % 2 + 8 * (c // 2)


def acc_as_a(a_shape) -> cute.Layout:
    """S's accumulator fragment ((2, 2), 1, N8), read as the A operand of P . V, shape
    ((2, 2, 2), 1, N8 / 2): the k16 A fragment of m16n8k16 is the C fragments of two adjacent n8
    atoms in order, so the compact storage is the same and only the shape changes."""
    return cute.make_layout(a_shape)


def swizzled_tiles(tokens: int, head_dim: int, slots: int):
    """(token, d, slot) tiles with 16-byte chunks XOR-swizzled by row (Swizzle<3,3,3> over 8 rows
    x 128 bytes): the 8 rows an ldmatrix reads at one column fall in 8 different bank groups."""
    atom = cute.make_composed_layout(cute.make_swizzle(3, 3, 3), 0, cute.make_layout((8, 64), stride=(64, 1)))
    return cute.tile_to_shape(atom, (tokens, head_dim, slots), (0, 1, 2))


class MmaDecodeKernel:
    """`__call__` has kernel.SplitDecodeKernel's signature, so the launcher passes the same tensors."""

    def __init__(self, cfg: DecodeConfig):
        assert cfg.mma, "MmaDecodeKernel runs DecodeConfig(mma=True)"
        self.cfg = cfg
        self.dtype = cutlass_dtype(cfg.dtype)

    @cute.jit
    def __call__(
        self,
        mQ: cute.Tensor,  # [batch, q_heads, head_dim]
        mK: cute.Tensor,  # [num_pages, page_size, kv_heads, head_dim]
        mV: cute.Tensor,  # same
        mBlockTable: cute.Tensor,  # [batch, max_pages] int32
        mSeqLens: cute.Tensor,  # [batch] int32
        mOPartial: cute.Tensor,  # [max_splits, max_batch, q_heads, head_dim] fp32
        mLSEPartial: cute.Tensor,  # [max_splits, max_batch, q_heads] fp32
        mO: cute.Tensor,  # [batch, q_heads, head_dim] dtype
        scale_log2: Float32,  # softmax scale * log2(e)
        num_splits: Int32,
        pages_per_split: Int32,
        stream,
    ):
        batch = mQ.shape[0]
        kv_heads = mK.shape[2]
        self.kernel(mQ, mK, mV, mBlockTable, mSeqLens, mOPartial, mLSEPartial, mO, scale_log2,
                    pages_per_split).launch(
            grid=[kv_heads, num_splits, batch],
            block=[self.cfg.num_threads, 1, 1],
            smem=self.cfg.smem_bytes(),
            stream=stream,
            use_pdl=self.cfg.pdl,
        )

    @cute.kernel
    def kernel(
        self,
        mQ: cute.Tensor,
        mK: cute.Tensor,
        mV: cute.Tensor,
        mBlockTable: cute.Tensor,
        mSeqLens: cute.Tensor,
        mOPartial: cute.Tensor,
        mLSEPartial: cute.Tensor,
        mO: cute.Tensor,
        scale_log2: Float32,
        pages_per_split: Int32,
    ):
        cfg = self.cfg
        GQ, D, P, S, W, NT = cfg.group, cfg.head_dim, cfg.page_size, cfg.smem_stages, cfg.warps, cfg.num_threads
        TN = cfg.mma_tile_tokens
        NEG_INF = Float32(-math.inf)

        tidx, _, _ = cute.arch.thread_idx()
        kvh, split, b = cute.arch.block_idx()
        wid = tidx // 32
        lane = tidx % 32

        if const_expr(cfg.pdl):  # launched early beside the kernel before it: wait for its writes (q, the caches)
            cute.arch.griddepcontrol_wait()
        t_begin, t_end = split_tokens(mSeqLens, b, split, pages_per_split, P)

        smem = cutlass.utils.SmemAllocator()
        sQ = smem.allocate_tensor(self.dtype, cute.make_layout((M, D), stride=(D, 1)), 16)
        sK = smem.allocate_tensor(self.dtype, swizzled_tiles(TN, D, S * W), 1024)
        sV = smem.allocate_tensor(self.dtype, swizzled_tiles(TN, D, S * W), 1024)
        s_max = smem.allocate_tensor(Float32, cute.make_layout((W, M), stride=(M, 1)), 16)
        s_sum = smem.allocate_tensor(Float32, cute.make_layout((W, M), stride=(M, 1)), 16)

        # Q of the group into rows 0..GQ-1 of sQ, zeros below (padded heads score 0, never NaN)
        CH = D // VEC  # 16-byte chunks per row
        for e in cutlass.range_constexpr((M * CH + NT - 1) // NT):
            idx = e * NT + tidx
            if idx < M * CH:
                h = idx // CH
                c = idx % CH
                dst = cute.local_tile(sQ[h, None], (VEC,), (c,))
                if h < GQ:
                    cute.autovec_copy(cute.local_tile(mQ[b, kvh * GQ + h, None], (VEC,), (c,)), dst)
                else:
                    dst.fill(0.0)
        cute.arch.sync_threads()

        mma = tiled_mma(self.dtype)
        thr = mma.get_slice(lane)
        ldsm = cute.make_copy_atom(warp.LdMatrix8x8x16bOp(transpose=False, num_matrices=4), self.dtype)
        ldsm_t = cute.make_copy_atom(warp.LdMatrix8x8x16bOp(transpose=True, num_matrices=4), self.dtype)
        cp_a = cute.make_tiled_copy_A(ldsm, mma).get_slice(lane)
        cp_k = cute.make_tiled_copy_B(ldsm, mma).get_slice(lane)
        cp_v = cute.make_tiled_copy_B(ldsm_t, mma).get_slice(lane)

        # Q stays in registers for the whole split (D / 4 registers per lane)
        tSrQ = thr.make_fragment_A(thr.partition_A(sQ))
        cute.copy(cp_a, cp_a.partition_S(sQ), cp_a.retile(tSrQ))

        # V as the B operand of P . V: (d, token, slot), a view of the same bytes
        sVt = cute.composition(sV, cute.make_layout((D, TN, S * W), stride=(TN, 1, TN * D)))
        tSsK = cp_k.partition_S(sK)  # (copy, n, k, slot)
        tOsV = cp_v.partition_S(sVt)
        tSrK = thr.make_fragment_B(thr.partition_B(sK[None, None, 0]))
        tOrV = thr.make_fragment_B(thr.partition_B(sVt[None, None, 0]))
        tSrK_view = cp_k.retile(tSrK)
        tOrV_view = cp_v.retile(tOrV)
        p_shape = thr.partition_shape_A((M, TN))  # P as the A operand of P . V
        KQ, KP = D // 16, TN // 16  # k steps of the two GEMMs, each one ldmatrix.x4 of B
        assert cute.size(tSrQ, mode=[2]) == cute.size(tSsK, mode=[2]) == KQ
        assert cute.size(p_shape, mode=[2]) == cute.size(tOsV, mode=[2]) == KP

        acc_s = cute.make_rmem_tensor(thr.partition_shape_C((M, TN)), Float32)
        acc_o = cute.make_rmem_tensor(thr.partition_shape_C((M, D)), Float32)
        acc_o.fill(0.0)
        s_rc = cute.make_tensor(acc_s.iterator, acc_rows_cols(acc_s.shape))
        o_rc = cute.make_tensor(acc_o.iterator, acc_rows_cols(acc_o.shape))
        p_frag = cute.make_rmem_tensor(acc_s.shape, self.dtype)
        tOrP = cute.make_tensor(p_frag.iterator, acc_as_a(p_shape))
        # running softmax state of this lane's two rows (identical across the 4 lanes of a quad)
        row_max = cute.make_rmem_tensor((2,), Float32)
        row_sum = cute.make_rmem_tensor((2,), Float32)
        row_max.fill(-math.inf)
        row_sum.fill(0.0)

        atom = cute.make_copy_atom(cpasync.CopyG2SOp(cache_mode=cpasync.LoadCacheMode.GLOBAL), self.dtype,
                                   num_bits_per_copy=128)
        n_tiles = cutlass.max(t_end - t_begin + (TN - 1), 0) // TN
        mine = (n_tiles - wid + (W - 1)) // W if n_tiles > wid else 0  # this warp's tiles: wid, wid + W, ...
        for st in cutlass.range_constexpr(S - 1):
            if st < mine:
                self._issue(atom, sK, sV, mK, mV, mBlockTable, b, kvh, lane,
                            t_begin + (wid + st * W) * TN, t_end, wid * S + st)
            cute.arch.cp_async_commit_group()
        for i in cutlass.range(mine, unroll=1):
            nxt = i + (S - 1)
            if nxt < mine:
                self._issue(atom, sK, sV, mK, mV, mBlockTable, b, kvh, lane,
                            t_begin + (wid + nxt * W) * TN, t_end, wid * S + nxt % S)
            cute.arch.cp_async_commit_group()
            cute.arch.cp_async_wait_group(S - 1)  # tile i has landed (this lane's copies)
            cute.arch.sync_warp()  # ... and every other lane's
            slot = wid * S + i % S
            base = t_begin + (wid + i * W) * TN

            # S = Q . K^T
            acc_s.fill(0.0)
            for k in cutlass.range_constexpr(KQ):
                cute.copy(cp_k, tSsK[None, None, k, slot], tSrK_view[None, None, k])
                cute.gemm(mma, acc_s, tSrQ[None, None, k], tSrK[None, None, k], acc_s)

            # online softmax (log2 domain), one rescale per tile
            for r in cutlass.range_constexpr(2):
                m_new = row_max[r]
                for c in cutlass.range_constexpr(cute.size(s_rc, mode=[1])):
                    s = s_rc[r, c] * scale_log2
                    s = s if base + acc_col(lane, c) < t_end else NEG_INF
                    s_rc[r, c] = s
                    m_new = cutlass.max(m_new, s)
                for k in cutlass.range_constexpr(2):  # the 4 lanes of a quad share the row
                    m_new = cutlass.max(m_new, cute.arch.shuffle_sync_bfly(m_new, offset=1 << k))
                # a row that has seen no token keeps -inf; subtract 0 then so exp2 gives 0, not NaN
                m_safe = m_new if m_new != NEG_INF else Float32(0.0)
                corr = cute.math.exp2(row_max[r] - m_safe, fastmath=True)
                row_max[r] = m_new
                total = row_sum[r] * corr
                for c in cutlass.range_constexpr(cute.size(s_rc, mode=[1])):
                    p = cute.math.exp2(s_rc[r, c] - m_safe, fastmath=True)
                    s_rc[r, c] = p
                    total += p
                row_sum[r] = total  # this lane's columns only; the quad is summed at the end
                for c in cutlass.range_constexpr(cute.size(o_rc, mode=[1])):
                    o_rc[r, c] = o_rc[r, c] * corr

            # O += P . V
            p_frag.store(acc_s.load().to(self.dtype))
            for k in cutlass.range_constexpr(KP):
                cute.copy(cp_v, tOsV[None, None, k, slot], tOrV_view[None, None, k])
                cute.gemm(mma, acc_o, tOrP[None, None, k], tOrV[None, None, k], acc_o)
            cute.arch.sync_warp()  # every lane has read this slot before it is refilled
        cute.arch.cp_async_wait_group(0)
        if const_expr(cfg.pdl):  # the stream is done: the combine may launch (it waits for this grid's writes)
            cute.arch.griddepcontrol_launch_dependents()

        for r in cutlass.range_constexpr(2):
            for k in cutlass.range_constexpr(2):
                row_sum[r] = row_sum[r] + cute.arch.shuffle_sync_bfly(row_sum[r], offset=1 << k)
        cute.arch.sync_threads()  # every warp is done with the ring: the merge reuses it

        # merge the W warps' partial softmaxes: unnormalised O rows of the group, row max and sum
        s_o = cute.make_tensor(cute.recast_ptr(sK.iterator, dtype=Float32),
                               cute.make_layout((W, GQ, D), stride=(GQ * D, D, 1)))
        for r in cutlass.range_constexpr(2):
            h = lane // 4 + 8 * r
            if h < GQ:
                for c in cutlass.range_constexpr(cute.size(o_rc, mode=[1])):
                    s_o[wid, h, acc_col(lane, c)] = o_rc[r, c]
        if lane % 4 == 0:
            for r in cutlass.range_constexpr(2):
                s_max[wid, lane // 4 + 8 * r] = row_max[r]
                s_sum[wid, lane // 4 + 8 * r] = row_sum[r]
        cute.arch.sync_threads()

        merge_and_write(s_o, s_max, s_sum, tidx, kvh, split, b, mO, mOPartial, mLSEPartial, NT, cfg.write_final)

    @cute.jit
    def _issue(self, atom, sK: cute.Tensor, sV: cute.Tensor, mK: cute.Tensor, mV: cute.Tensor,
               mBlockTable: cute.Tensor, b, kvh, lane, base, t_end, slot):
        """cp.async one tile (tokens base .. base+TN) of K and V into `slot`: lane l copies the
        16-byte chunk l % CH of rows l / CH, l / CH + 32 / CH, ...; rows past the split's end are
        zeroed instead (P is 0 there, and 0 * stale bytes could be NaN)."""
        cfg = self.cfg
        D, P, TN = cfg.head_dim, cfg.page_size, cfg.mma_tile_tokens
        CH = D // VEC
        RPP = 32 // CH  # rows per pass of the warp
        c = lane % CH
        tile_page = 0
        if const_expr(P % TN == 0):  # splits start on a page and tiles every TN tokens: one page per tile
            tile_page = mBlockTable[b, base // P]
        for j in cutlass.range_constexpr(TN // RPP):
            r = j * RPP + lane // CH
            t = base + r
            k_dst = cute.local_tile(sK[r, None, slot], (VEC,), (c,))
            v_dst = cute.local_tile(sV[r, None, slot], (VEC,), (c,))
            if t < t_end:
                page = tile_page
                if const_expr(P % TN != 0):
                    page = mBlockTable[b, t // P]
                off = t % P
                cute.copy(atom, cute.local_tile(mK[page, off, kvh, None], (VEC,), (c,)), k_dst)
                cute.copy(atom, cute.local_tile(mV[page, off, kvh, None], (VEC,), (c,)), v_dst)
            else:
                k_dst.fill(0.0)
                v_dst.fill(0.0)
