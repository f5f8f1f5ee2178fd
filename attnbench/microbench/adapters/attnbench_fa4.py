"""Microbench adapter for attnbench's own split-KV decode kernel (attnbench/kernels/fa4_decode)."""

from __future__ import annotations

from attnbench.kernels.fa4_decode import limits
from attnbench.microbench.base import DecodeInputs, DecodeShape, Kernel, Shape


class AttnbenchFA4(Kernel):
    name = "attnbench-fa4"

    def __init__(self, num_splits: int | None = None):
        self.num_splits = num_splits  # None: the planner decides (what vLLM gets)
        self._decoders: dict = {}  # one FA4Decode (and workspace) per geometry, shared by input copies

    def with_options(self, **options) -> AttnbenchFA4:
        splits = options.get("num_splits", self.num_splits)
        return AttnbenchFA4(num_splits=splits or None)  # 0 or None: the planner decides

    def unsupported(self, shape: Shape) -> str | None:
        if shape.op != "decode":
            return "attnbench-fa4 is a decode kernel (in vLLM, prefill runs on vLLM's FlashAttention: fa3 on SM90)"
        why = limits.unsupported(head_dim=shape.head_dim, group=shape.q_heads // shape.kv_heads,
                                 page_size=shape.page_size, dtype=shape.dtype, q_len=shape.q_len)
        return f"attnbench-fa4 cannot decode {why}" if why else None

    def decode(self, shape: DecodeShape, inp: DecodeInputs):
        from attnbench.kernels.fa4_decode.launcher import FA4Decode

        key = (shape.q_heads, shape.kv_heads, shape.head_dim, shape.page_size, shape.dtype, shape.batch, str(inp.q.device))
        max_context = max(shape.context_lens)
        dec = self._decoders.get(key)
        if dec is None:  # calls run one after another on one stream, so copies can share a workspace
            dec = self._decoders[key] = FA4Decode(
                q_heads=shape.q_heads, kv_heads=shape.kv_heads, head_dim=shape.head_dim, page_size=shape.page_size,
                dtype=shape.dtype, max_batch=shape.batch, device=inp.q.device)
        # the launch configuration the tuning table gives this shape class (what vLLM would run)
        dec.compile(max_context=max_context)
        splits = self.num_splits
        args = (inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out)

        def run() -> None:
            dec(*args, max_context=max_context, num_splits=splits)

        return run
