"""The microbench adapter for attnbench-fa4: which shapes it takes (checked before any GPU work)."""

import pytest

from attnbench.microbench.base import DecodeShape, PrefillShape
from attnbench.microbench.check import TOLERANCE
from attnbench.microbench.adapters.attnbench_fa4 import AttnbenchFA4


def test_adapter_declines_prefill_multi_token_and_odd_head_dims():
    k = AttnbenchFA4()
    assert k.unsupported(DecodeShape.uniform(4, 100)) is None
    assert k.unsupported(DecodeShape.uniform(4, 100, head_dim=64, page_size=64, dtype="float16")) is None
    assert "decode" in k.unsupported(PrefillShape.uniform(1, 16))
    assert "q_len" in k.unsupported(DecodeShape.uniform(2, 10, q_len=2))
    assert "head_dim" in k.unsupported(DecodeShape.uniform(2, 10, head_dim=96))
    assert "GQA" in k.unsupported(DecodeShape.uniform(2, 10, q_heads=64, kv_heads=2))


def test_options_make_a_configured_copy():
    k = AttnbenchFA4()
    assert k.with_options(num_splits=4).num_splits == 4 and k.num_splits is None
    assert k.with_options().num_splits is None


@pytest.mark.gpu
def test_adapter_closure_writes_the_reference_output_and_shares_one_workspace():
    import torch

    from attnbench.kernels.fa4_decode import reference
    from attnbench.microbench.inputs import decode_inputs

    shape = DecodeShape(batch=4, context_lens=(1, 100, 2048, 700))
    k = AttnbenchFA4()
    copies = [decode_inputs(shape, device="cuda", seed=s) for s in (0, 1)]
    runs = [k.decode(shape, inp) for inp in copies]
    assert len(k._decoders) == 1  # input copies reuse one FA4Decode (one workspace)
    for run, inp in zip(runs, copies):
        run()
        torch.cuda.synchronize()
        ref = reference.decode(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale)
        assert not inp.out.isnan().any()
        assert float((inp.out.float() - ref).norm() / ref.norm()) <= TOLERANCE[shape.dtype]
