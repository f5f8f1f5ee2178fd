"""The split combine kernel (CuTe DSL): row_warps warps per (sequence, query head) row.

out = sum_s w_s * out_s with w_s = exp(lse_s - LSE) and LSE = logsumexp_s(lse_s): each split's
partial output is already normalised by its own sum l_s = exp(lse_s - m_s)... so rescaling by
exp(lse_s) / sum_s exp(lse_s) gives the softmax over the union. Empty splits carry lse = -inf
and weight 0; a row whose splits are all empty writes zeros rather than NaN.

A warp's loop over splits is a chain of dependent L2 round trips when the rows are few (batch 1:
16 rows, 33 splits, 8 loads in flight per lane: 5 rounds). With row_warps R > 1 the R warps of a
row take every R-th split each and add their sums through shared memory: ceil(splits / R) loads
per lane, so one or two rounds.
"""

from __future__ import annotations

import math

import cutlass
from cutlass import Float32, Int32, const_expr, cute

from attnbench.kernels.fa4_decode.config import CombineConfig  # noqa: F401 (re-exported)
from attnbench.kernels.fa4_decode.kernel import cutlass_dtype

LOG2_E = math.log2(math.e)


class CombineKernel:
    def __init__(self, cfg: CombineConfig):
        self.cfg = cfg
        self.dtype = cutlass_dtype(cfg.dtype)

    @cute.jit
    def __call__(
        self,
        mOPartial: cute.Tensor,  # [max_splits, max_batch, q_heads, head_dim] fp32
        mLSEPartial: cute.Tensor,  # [max_splits, max_batch, q_heads] fp32
        mO: cute.Tensor,  # [batch, q_heads, head_dim] dtype
        num_splits: Int32,
        stream,
    ):
        cfg = self.cfg
        rows = mO.shape[0] * mO.shape[1]
        per_cta = cfg.warps // cfg.row_warps
        self.kernel(mOPartial, mLSEPartial, mO, num_splits).launch(
            grid=[(rows + per_cta - 1) // per_cta, 1, 1],
            block=[32 * cfg.warps, 1, 1],
            smem=cfg.smem_bytes(),
            stream=stream,
            use_pdl=cfg.pdl,
        )

    @cute.kernel
    def kernel(self, mOPartial: cute.Tensor, mLSEPartial: cute.Tensor, mO: cute.Tensor, num_splits: Int32):
        cfg = self.cfg
        SLOTS = cfg.slots
        PER = cfg.per_lane
        R = cfg.row_warps
        tidx, _, _ = cute.arch.thread_idx()
        bidx, _, _ = cute.arch.block_idx()
        warp = tidx // 32
        lane = tidx % 32
        q_heads = mO.shape[1]
        r = bidx * (cfg.warps // R) + warp // R
        part = warp % R  # this warp sums splits part, part + R, ...

        if const_expr(cfg.pdl):  # may start before the split decode ends: every partial read waits for it
            cute.arch.griddepcontrol_wait()
        smem = cutlass.utils.SmemAllocator()
        s_w = smem.allocate_tensor(Float32, cute.make_layout((32 * SLOTS, cfg.warps), stride=(1, 32 * SLOTS)), 16)
        s_acc = None
        if const_expr(R > 1):  # the R partial sums of each row (smem_bytes counts it only then)
            s_acc = smem.allocate_tensor(Float32, cute.make_layout((cfg.head_dim, cfg.warps), stride=(1, cfg.head_dim)), 16)

        if r < mO.shape[0] * q_heads:
            b = r // q_heads
            h = r % q_heads
            lse = cute.make_rmem_tensor((SLOTS,), Float32)
            NEG_INF = Float32(-math.inf)
            m = NEG_INF
            for k in cutlass.range_constexpr(SLOTS):
                s = k * 32 + lane
                lse[k] = mLSEPartial[s, b, h] if s < num_splits else NEG_INF
                m = cutlass.max(m, lse[k])
            for k in cutlass.range_constexpr(5):
                m = cutlass.max(m, cute.arch.shuffle_sync_bfly(m, offset=1 << k))
            m_safe = m if m != NEG_INF else Float32(0.0)
            total = Float32(0.0)
            for k in cutlass.range_constexpr(SLOTS):
                lse[k] = cute.math.exp2((lse[k] - m_safe) * LOG2_E, fastmath=True)
                total += lse[k]
            for k in cutlass.range_constexpr(5):
                total += cute.arch.shuffle_sync_bfly(total, offset=1 << k)
            inv = Float32(1.0) / total if total > Float32(0.0) else Float32(0.0)
            for k in cutlass.range_constexpr(SLOTS):
                s_w[k * 32 + lane, warp] = lse[k] * inv
            cute.arch.sync_warp()

            acc = cute.make_rmem_tensor((PER,), Float32)
            acc.fill(0.0)
            chunk = cute.make_rmem_tensor((PER,), Float32)
            for s in cutlass.range(part, num_splits, R, unroll=8):  # 8 independent 16-byte loads in flight per lane
                cute.autovec_copy(cute.local_tile(mOPartial[s, b, h, None], (PER,), (lane,)), chunk)
                w = s_w[s, warp]
                for i in cutlass.range_constexpr(PER):
                    acc[i] = acc[i] + w * chunk[i]
            if const_expr(R == 1):
                self._write(acc, mO, b, h, lane)
            else:
                for i in cutlass.range_constexpr(PER):
                    s_acc[lane * PER + i, warp] = acc[i]
        if const_expr(R > 1):
            cute.arch.sync_threads()  # every warp of the CTA reaches it, rows past the end included
            if r < mO.shape[0] * q_heads and part == 0:  # the row's first warp adds the R sums and writes
                summed = cute.make_rmem_tensor((PER,), Float32)
                for i in cutlass.range_constexpr(PER):
                    summed[i] = s_acc[lane * PER + i, warp]
                    for j in cutlass.range_constexpr(1, R):
                        summed[i] = summed[i] + s_acc[lane * PER + i, warp + j]
                self._write(summed, mO, r // q_heads, r % q_heads, lane)

    @cute.jit
    def _write(self, acc: cute.Tensor, mO: cute.Tensor, b, h, lane):
        out = cute.make_rmem_tensor((self.cfg.per_lane,), self.dtype)
        out.store(acc.load().to(self.dtype))
        cute.autovec_copy(out, cute.local_tile(mO[b, h, None], (self.cfg.per_lane,), (lane,)))
