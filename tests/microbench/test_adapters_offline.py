"""The parts of the GPU adapters that need no GPU: how they plan, and what vLLM would pass."""

import pytest

torch = pytest.importorskip("torch")

from attnbench.microbench import inputs, run  # noqa: E402
from attnbench.microbench.base import DecodeShape, PrefillShape  # noqa: E402
from attnbench.microbench.adapters.flash_attn import FA2, FA3, FA4, fa3_num_splits  # noqa: E402
from attnbench.microbench.adapters.flashinfer import paged_metadata  # noqa: E402


def test_flashinfer_csr_view_lists_each_sequences_pages_in_order():
    shape = DecodeShape(batch=3, context_lens=(5, 16, 33), page_size=8, head_dim=16)
    inp = inputs.decode_inputs(shape, "cpu")
    indptr, indices, last = paged_metadata(inp.block_table, shape.context_lens, 8)
    assert indptr.tolist() == [0, 1, 3, 8] and last.tolist() == [5, 8, 1]
    assert indices.tolist() == [*inp.block_table[0, :1].tolist(), *inp.block_table[1, :2].tolist(),
                                *inp.block_table[2, :5].tolist()]
    assert indptr.dtype == indices.dtype == last.dtype == torch.int32


def test_fa3_splits_follow_vllms_cuda_graph_rule():
    assert fa3_num_splits(256) == 32 and fa3_num_splits(512) == 32 and fa3_num_splits(513) == 0
    assert FA3()._splits(8) == 32 and FA3()._splits(65536) == 0 and FA2()._splits(8) == 0


def test_fa4_splits_option_and_label():
    opts = run.Options(device="cuda", fa4_splits=1)
    assert run.label("fa4", opts) == "fa4-splits1" and run.label("fa3", opts) == "fa3"
    assert run.label("fa4", run.Options(fa4_splits=0)) == "fa4"
    k = run.load_kernel("fa4", opts)
    assert isinstance(k, FA4) and k.num_splits == 1
    assert run.load_kernel("fa4", run.Options()).num_splits == 0  # 0: FA4's own heuristic


def test_inputs_that_cannot_be_built_mark_every_backend_and_the_run_goes_on(monkeypatch):
    from attnbench.microbench import check

    calls = []

    def reference(shape, inp):
        calls.append(shape)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 40 GiB")
        return torch.zeros(inp.q.shape)

    monkeypatch.setattr(check, "reference", reference)
    shapes = [PrefillShape(seqlens=(4,), q_heads=2, kv_heads=1, head_dim=8), PrefillShape(seqlens=(5,), q_heads=2, kv_heads=1, head_dim=8)]
    recs = run.run(shapes, ["reference"], run.Options(device="cpu", repeats=1), provenance={})
    assert recs[0].samples["verdict"] == "skipped" and recs[0].error.startswith("inputs do not fit")
    assert recs[1].samples["verdict"] == "FAIL"  # the zero "reference" disagrees with the real kernel
