"""A wrong kernel must be flagged FAIL, however plausibly its output looks."""

import pytest

torch = pytest.importorskip("torch")

from attnbench.microbench import check, inputs, run  # noqa: E402
from attnbench.microbench.base import DecodeShape, Kernel  # noqa: E402
from attnbench.microbench.adapters.reference import decode_reference  # noqa: E402


class IgnoresBlockTable(Kernel):
    """Reads pages 0,1,2,... in order instead of the block table's pages."""
    name = "wrong"

    def decode(self, shape, inp):
        def fn():
            inp2 = type(inp)(**{**vars(inp), "block_table": torch.arange(inp.block_table.numel(), dtype=torch.int32)
                                .reshape(inp.block_table.shape) % inp.k_cache.shape[0]})
            inp.out.copy_(decode_reference(shape, inp2))
        return fn


class SkipsLastSequence(Kernel):
    name = "lazy"

    def decode(self, shape, inp):
        def fn():
            inp.out[:-1].copy_(decode_reference(shape, inp)[:-1])
        return fn


SHAPE = DecodeShape(batch=3, context_lens=(40, 7, 33), q_heads=4, kv_heads=2, head_dim=16, page_size=4)


def test_reference_passes_and_wrong_kernels_fail():
    inp = inputs.decode_inputs(SHAPE, "cpu")
    ref = decode_reference(SHAPE, inp)
    good = check.run_checked(run.load_kernel("reference", run.Options(device="cpu")).decode(SHAPE, inp), inp.out, ref, SHAPE.dtype)
    assert good.ok and good.rel_err < 5e-3
    wrong = check.run_checked(IgnoresBlockTable().decode(SHAPE, inp), inp.out, ref, SHAPE.dtype)
    assert not wrong.ok and wrong.rel_err > 0.1 and "rel_err" in wrong.describe()
    lazy = check.run_checked(SkipsLastSequence().decode(SHAPE, inp), inp.out, ref, SHAPE.dtype)
    assert not lazy.ok and lazy.unwritten > 0 and "never written" in lazy.describe()


def test_output_is_poisoned_before_each_checked_run():
    """A kernel that writes nothing passes only if stale output survives; poisoning stops that."""
    inp = inputs.decode_inputs(SHAPE, "cpu")
    ref = decode_reference(SHAPE, inp)
    inp.out.copy_(ref)
    assert not check.run_checked(lambda: None, inp.out, ref, SHAPE.dtype).ok


def test_fp16_tolerance_is_tighter():
    assert check.TOLERANCE["float16"] < check.TOLERANCE["bfloat16"] == 1e-2


def test_wrong_kernel_is_marked_failed_in_its_record():
    inp = inputs.decode_inputs(SHAPE, "cpu")
    rec = run._record("wrong", SHAPE, run.Options(device="cpu", repeats=2), {}, None)
    run.measure_one(IgnoresBlockTable(), SHAPE, inp, decode_reference(SHAPE, inp), run.Options(device="cpu", repeats=2), None, rec)
    assert rec.status == "failed" and rec.samples["verdict"] == "FAIL" and rec.metrics["us"] > 0


def test_a_backend_that_breaks_or_cannot_run_is_recorded_and_the_run_goes_on():
    """On this CPU machine fa2's library is missing: its record says so, the reference still runs."""
    shapes = [DecodeShape.uniform(2, 16, q_heads=2, kv_heads=1, head_dim=8), DecodeShape.uniform(1, 24, q_heads=2, kv_heads=1, head_dim=8)]
    seen = []
    recs = run.run(shapes, ["fa2", "reference"], run.Options(device="cpu", repeats=1), provenance={}, on_record=seen.append)
    assert len(recs) == 4 and seen == recs
    broken = [r for r in recs if r.backend == "fa2"]
    assert all(r.status == "failed" and r.samples["verdict"] == "error" and r.error for r in broken)
    assert all(r.status == "ok" for r in recs if r.backend == "reference")


class Picky(Kernel):
    name = "picky"

    def unsupported(self, shape):
        return "only even batches" if shape.batch % 2 else None


def test_unsupported_shapes_are_skipped_with_the_kernels_reason():
    inp = inputs.decode_inputs(SHAPE, "cpu")
    opts = run.Options(device="cpu", repeats=1)
    rec = run.measure_one(Picky(), SHAPE, inp, None, opts, None, run._record("picky", SHAPE, opts, {}, None))
    assert rec.samples["verdict"] == "skipped" and rec.error == "unsupported: only even batches" and "us" not in rec.metrics
