"""The split-KV paged decode kernel (CuTe DSL, SM90): one CTA per (kv_head, split, sequence).

Decode is a stream over the KV cache, so the kernel is built around bytes in flight, not FLOPs:
each thread owns one 16-byte slice of a K row and of a V row (head_dim/8 threads per token) and
keeps tokens_per_thread rows of each in flight, and many CTAs live on each SM (no tensor cores: a
GQA group of 2-8 query heads is a few FMAs per loaded byte). Three ways to stream, one config
switch each (NOTES.md has the numbers): v1.1 loads a step into registers then computes it; v2
double-buffers the registers; v3 cp.asyncs into a shared-memory ring several steps ahead.

Scores are kept in the log2 domain (q is pre-multiplied by scale*log2(e)), so the online softmax
uses exp2; the partial LSE written out is natural-log: lse = (m + log2(l)) * ln(2).
"""

from __future__ import annotations

import math

import cutlass
from cutlass import Float32, Int32, const_expr, cute
from cutlass.cute.nvgpu import cpasync

from attnbench.kernels.fa4_decode.config import LOG2_E, VEC_BYTES, DecodeConfig  # noqa: F401 (re-exported)

LN2 = math.log(2.0)


def cutlass_dtype(name: str):
    return {"bfloat16": cutlass.BFloat16, "float16": cutlass.Float16}[name]


@cute.jit
def split_tokens(mSeqLens: cute.Tensor, b, split, pages_per_split: Int32, P: cutlass.Constexpr):
    """The tokens [t_begin, t_end) split `split` of sequence `b` reads (both kernels cut alike, so
    the combine sees the same partials). Whole pages of P tokens per split: pages_per_split of
    them, or with 0 this sequence's own pages cut into num_splits even ranges, read from seq_lens
    on the device, so a CUDA graph captured at the longest context still spreads a short sequence
    over every split instead of leaving all but its first few empty."""
    seq_len = mSeqLens[b]
    num_pages = (seq_len + (P - 1)) // P
    _, num_splits, _ = cute.arch.grid_dim()
    even = cutlass.max((num_pages + (num_splits - 1)) // num_splits, 1)
    pps = pages_per_split if pages_per_split > 0 else even
    p_begin = split * pps
    # the last split runs to the end of the sequence: a fixed plan made for a shorter
    # max_context (a graph replayed after lengths grew) is then slower, never wrong
    p_end = cutlass.min(p_begin + pps, num_pages) if split < num_splits - 1 else num_pages
    return p_begin * P, cutlass.min(p_end * P, seq_len)


@cute.jit
def merge_and_write(s_o: cute.Tensor, s_max: cute.Tensor, s_sum: cute.Tensor, tidx, kvh, split, b,
                    mO: cute.Tensor, mOPartial: cute.Tensor, mLSEPartial: cute.Tensor,
                    NT: cutlass.Constexpr, write_final: cutlass.Constexpr):
    """Merge a CTA's R partial softmaxes of its GQA group (s_o[r, h, d]: unnormalised output;
    s_max, s_sum [r, h]: row max, log2 domain, and row sum) and write the split's result: the
    output when write_final, else the fp32 partial and its natural-log LSE for the combine.
    Every thread of the CTA (NT of them) takes elements (h, d) in turn."""
    R, GQ, D = s_o.shape
    neg_inf = Float32(-math.inf)
    for e in cutlass.range_constexpr((GQ * D + NT - 1) // NT):
        idx = e * NT + tidx
        if idx < GQ * D:
            h = idx // D
            d = idx % D
            m_all = neg_inf
            for r in cutlass.range_constexpr(R):
                m_all = cutlass.max(m_all, s_max[r, h])
            m_safe = m_all if m_all != neg_inf else Float32(0.0)
            total = Float32(0.0)
            o = Float32(0.0)
            for r in cutlass.range_constexpr(R):
                w = cute.math.exp2(s_max[r, h] - m_safe, fastmath=True)
                total += s_sum[r, h] * w
                o += s_o[r, h, d] * w
            # an empty split (no tokens) has total 0: output 0 and lse -inf
            inv = Float32(1.0) / total if total > Float32(0.0) else Float32(0.0)
            o = o * inv
            qh = kvh * GQ + h
            if const_expr(write_final):
                mO[b, qh, d] = o.to(mO.element_type)
            else:
                mOPartial[split, b, qh, d] = o
                if d == 0:
                    # an empty split has m_all = -inf and log2(0) = -inf, so lse = -inf as it must
                    mLSEPartial[split, b, qh] = (m_all + cute.math.log2(total, fastmath=True)) * LN2


class SplitDecodeKernel:
    """`__call__` is the host-side @cute.jit entry compiled once per DecodeConfig."""

    def __init__(self, cfg: DecodeConfig):
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
        cfg = self.cfg
        batch = mQ.shape[0]
        kv_heads = mK.shape[2]
        self.kernel(mQ, mK, mV, mBlockTable, mSeqLens, mOPartial, mLSEPartial, mO, scale_log2,
                    pages_per_split).launch(
            grid=[kv_heads, num_splits, batch],
            block=[cfg.num_threads, 1, 1],
            smem=cfg.smem_bytes(),
            stream=stream,
            use_pdl=cfg.pdl,
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
        VEC = cfg.vec
        LANES = cfg.lanes_per_row
        ROWS = cfg.rows
        GQ = cfg.group
        T = cfg.tokens_per_thread
        P = cfg.page_size
        D = cfg.head_dim
        NT = cfg.num_threads

        tidx, _, _ = cute.arch.thread_idx()
        kvh, split, b = cute.arch.block_idx()
        row = tidx // LANES
        lane = tidx % LANES

        if const_expr(cfg.pdl):  # launched early beside the kernel before it: wait for its writes (q, the caches)
            cute.arch.griddepcontrol_wait()
        t_begin, t_end = split_tokens(mSeqLens, b, split, pages_per_split, P)

        # q slice of every head in the GQA group, pre-scaled into the log2 domain
        q = cute.make_rmem_tensor((GQ * VEC,), Float32)
        qtmp = cute.make_rmem_tensor((VEC,), self.dtype)
        for h in cutlass.range_constexpr(GQ):
            cute.autovec_copy(cute.local_tile(mQ[b, kvh * GQ + h, None], (VEC,), (lane,)), qtmp)
            qf = qtmp.load().to(Float32)
            for i in cutlass.range_constexpr(VEC):
                q[h * VEC + i] = qf[i] * scale_log2

        # running softmax state of the tokens this row has seen (identical across its lanes)
        row_max = cute.make_rmem_tensor((GQ,), Float32)
        row_sum = cute.make_rmem_tensor((GQ,), Float32)
        acc = cute.make_rmem_tensor((GQ * VEC,), Float32)
        row_max.fill(-math.inf)
        row_sum.fill(0.0)
        acc.fill(0.0)

        k_frag = [cute.make_rmem_tensor((VEC,), self.dtype) for _ in range(T)]
        v_frag = [cute.make_rmem_tensor((VEC,), self.dtype) for _ in range(T)]
        scores = cute.make_rmem_tensor((T * GQ,), Float32)

        # page ids are looked up one step ahead so the K/V loads never wait on the block table
        STEP = ROWS * T
        pages_a = cute.make_rmem_tensor((T,), Int32)
        pages_a.fill(0)
        self._fetch_pages(mBlockTable, b, t_begin, t_end, row, pages_a)
        smem = cutlass.utils.SmemAllocator()
        if const_expr(cfg.smem_stages > 0):
            self._stream_smem(smem, mK, mV, mBlockTable, b, kvh, lane, row, tidx, t_begin, t_end,
                              q, k_frag, v_frag, scores, row_max, row_sum, acc)
        elif const_expr(not cfg.pipeline):
            for base in cutlass.range(t_begin, t_end, STEP, unroll=1):
                # issue every load of this step before using any of them
                self._load(mK, mV, kvh, lane, row, base, t_end, pages_a, k_frag, v_frag)
                self._fetch_pages(mBlockTable, b, base + STEP, t_end, row, pages_a)
                self._consume(row, base, t_end, q, k_frag, v_frag, scores, row_max, row_sum, acc)
        else:
            # two register buffers: step i+1's loads are in flight while step i is computed
            k_b = [cute.make_rmem_tensor((VEC,), self.dtype) for _ in range(T)]
            v_b = [cute.make_rmem_tensor((VEC,), self.dtype) for _ in range(T)]
            pages_b = cute.make_rmem_tensor((T,), Int32)
            pages_b.fill(0)
            self._load(mK, mV, kvh, lane, row, t_begin, t_end, pages_a, k_frag, v_frag)
            self._fetch_pages(mBlockTable, b, t_begin + STEP, t_end, row, pages_b)
            for base in cutlass.range(t_begin, t_end, 2 * STEP, unroll=1):
                self._load(mK, mV, kvh, lane, row, base + STEP, t_end, pages_b, k_b, v_b)
                self._fetch_pages(mBlockTable, b, base + 2 * STEP, t_end, row, pages_a)
                self._consume(row, base, t_end, q, k_frag, v_frag, scores, row_max, row_sum, acc)
                self._load(mK, mV, kvh, lane, row, base + 2 * STEP, t_end, pages_a, k_frag, v_frag)
                self._fetch_pages(mBlockTable, b, base + 3 * STEP, t_end, row, pages_b)
                self._consume(row, base + STEP, t_end, q, k_b, v_b, scores, row_max, row_sum, acc)

        if const_expr(cfg.pdl):  # the stream is done: the combine may launch (it waits for this grid's writes)
            cute.arch.griddepcontrol_launch_dependents()
        # merge the ROWS partial softmaxes of this CTA through shared memory
        s_acc = smem.allocate_tensor(Float32, cute.make_layout((ROWS, GQ * D), stride=(GQ * D, 1)), 16)
        s_max = smem.allocate_tensor(Float32, cute.make_layout((ROWS, GQ), stride=(GQ, 1)), 16)
        s_sum = smem.allocate_tensor(Float32, cute.make_layout((ROWS, GQ), stride=(GQ, 1)), 16)
        for h in cutlass.range_constexpr(GQ):
            for i in cutlass.range_constexpr(VEC):
                s_acc[row, h * D + lane * VEC + i] = acc[h * VEC + i]
            if lane == 0:
                s_max[row, h] = row_max[h]
                s_sum[row, h] = row_sum[h]
        cute.arch.sync_threads()

        merge_and_write(cute.make_tensor(s_acc.iterator, cute.make_layout((ROWS, GQ, D), stride=(GQ * D, D, 1))),
                        s_max, s_sum, tidx, kvh, split, b, mO, mOPartial, mLSEPartial, NT, cfg.write_final)

    @cute.jit
    def _fetch_pages(self, mBlockTable: cute.Tensor, b, base, t_end, row, pages: cute.Tensor):
        """Page id of each token this row reads in the step starting at `base` (kept if past the end)."""
        for j in cutlass.range_constexpr(self.cfg.tokens_per_thread):
            t = base + j * self.cfg.rows + row
            if t < t_end:
                pages[j] = mBlockTable[b, t // self.cfg.page_size]

    @cute.jit
    def _load(self, mK: cute.Tensor, mV: cute.Tensor, kvh, lane, row, base, t_end, pages: cute.Tensor, k_frag, v_frag):
        """Issue this lane's 16-byte K and V loads for every token of the step (no use yet)."""
        cfg = self.cfg
        for j in cutlass.range_constexpr(cfg.tokens_per_thread):
            t = base + j * cfg.rows + row
            if t < t_end:
                off = t % cfg.page_size
                page = pages[j]
                cute.autovec_copy(cute.local_tile(mK[page, off, kvh, None], (cfg.vec,), (lane,)), k_frag[j])
                cute.autovec_copy(cute.local_tile(mV[page, off, kvh, None], (cfg.vec,), (lane,)), v_frag[j])
            else:
                k_frag[j].fill(0.0)
                v_frag[j].fill(0.0)

    @cute.jit
    def _consume(self, row, base, t_end, q: cute.Tensor, k_frag, v_frag, scores: cute.Tensor,
                 row_max: cute.Tensor, row_sum: cute.Tensor, acc: cute.Tensor):
        """Scores of the step's tokens, then one online-softmax rescale and the P.V accumulation."""
        cfg = self.cfg
        VEC, GQ, T = cfg.vec, cfg.group, cfg.tokens_per_thread
        NEG_INF = Float32(-math.inf)
        for j in cutlass.range_constexpr(T):
            kf = k_frag[j].load().to(Float32)
            for h in cutlass.range_constexpr(GQ):
                s = Float32(0.0)
                for i in cutlass.range_constexpr(VEC):
                    s += q[h * VEC + i] * kf[i]
                for k in cutlass.range_constexpr(int(math.log2(cfg.lanes_per_row))):
                    s += cute.arch.shuffle_sync_bfly(s, offset=1 << k)
                t = base + j * cfg.rows + row
                scores[j * GQ + h] = s if t < t_end else NEG_INF
        for h in cutlass.range_constexpr(GQ):
            m_new = row_max[h]
            for j in cutlass.range_constexpr(T):
                m_new = cutlass.max(m_new, scores[j * GQ + h])
            # a row that has seen no token yet keeps -inf; subtract 0 then so exp2 gives 0, not NaN
            m_safe = m_new if m_new != NEG_INF else Float32(0.0)
            corr = cute.math.exp2(row_max[h] - m_safe, fastmath=True)
            row_max[h] = m_new
            row_sum[h] = row_sum[h] * corr
            for i in cutlass.range_constexpr(VEC):
                acc[h * VEC + i] = acc[h * VEC + i] * corr
            for j in cutlass.range_constexpr(T):
                p = cute.math.exp2(scores[j * GQ + h] - m_safe, fastmath=True)
                row_sum[h] = row_sum[h] + p
                vf = v_frag[j].load().to(Float32)
                for i in cutlass.range_constexpr(VEC):
                    acc[h * VEC + i] = acc[h * VEC + i] + p * vf[i]

    @cute.jit
    def _stream_smem(self, smem, mK: cute.Tensor, mV: cute.Tensor, mBlockTable: cute.Tensor, b, kvh, lane, row,
                     tidx, t_begin, t_end, q: cute.Tensor, k_frag, v_frag, scores: cute.Tensor,
                     row_max: cute.Tensor, row_sum: cute.Tensor, acc: cute.Tensor):
        """v3: cp.async each step's K/V rows into a per-thread slot of an S-step shared-memory ring,
        S-1 steps ahead of the step being computed. In-flight bytes then cost no registers. Each
        thread reads back only what it copied itself, so cp.async.wait_group is the only sync."""
        cfg = self.cfg
        S, T, VEC, NT, STEP = cfg.smem_stages, cfg.tokens_per_thread, cfg.vec, cfg.num_threads, cfg.rows * cfg.tokens_per_thread
        # (elements, thread, token, K/V, stage): consecutive threads hit consecutive 16 bytes (no bank conflicts)
        ring = smem.allocate_tensor(self.dtype, cute.make_layout((VEC, NT, T, 2, S)), 128)
        atom = cute.make_copy_atom(cpasync.CopyG2SOp(cache_mode=cpasync.LoadCacheMode.GLOBAL), self.dtype,
                                   num_bits_per_copy=128)
        n_steps = (t_end - t_begin + (STEP - 1)) // STEP
        for st in cutlass.range_constexpr(S - 1):
            self._issue(atom, ring, mK, mV, mBlockTable, b, kvh, lane, row, tidx, t_begin + st * STEP, t_end, st)
            cute.arch.cp_async_commit_group()
        for i in cutlass.range(n_steps, unroll=1):
            # refill the slot consumed in the previous iteration (its reads finished: they were ld.shared)
            nxt = i + (S - 1)
            self._issue(atom, ring, mK, mV, mBlockTable, b, kvh, lane, row, tidx, t_begin + nxt * STEP, t_end, nxt % S)
            cute.arch.cp_async_commit_group()
            cute.arch.cp_async_wait_group(S - 1)  # step i's group has landed
            base = t_begin + i * STEP
            stage = i % S
            for j in cutlass.range_constexpr(T):
                t = base + j * cfg.rows + row
                if t < t_end:
                    cute.autovec_copy(ring[None, tidx, j, 0, stage], k_frag[j])
                    cute.autovec_copy(ring[None, tidx, j, 1, stage], v_frag[j])
                else:  # the slot holds stale bytes: zero them so 0 * garbage cannot make a NaN
                    k_frag[j].fill(0.0)
                    v_frag[j].fill(0.0)
            self._consume(row, base, t_end, q, k_frag, v_frag, scores, row_max, row_sum, acc)
        cute.arch.cp_async_wait_group(0)

    @cute.jit
    def _issue(self, atom, ring: cute.Tensor, mK: cute.Tensor, mV: cute.Tensor, mBlockTable: cute.Tensor, b, kvh,
               lane, row, tidx, base, t_end, stage):
        cfg = self.cfg
        for j in cutlass.range_constexpr(cfg.tokens_per_thread):
            t = base + j * cfg.rows + row
            if t < t_end:
                page = mBlockTable[b, t // cfg.page_size]
                off = t % cfg.page_size
                cute.copy(atom, cute.local_tile(mK[page, off, kvh, None], (cfg.vec,), (lane,)), ring[None, tidx, j, 0, stage])
                cute.copy(atom, cute.local_tile(mV[page, off, kvh, None], (cfg.vec,), (lane,)), ring[None, tidx, j, 1, stage])
