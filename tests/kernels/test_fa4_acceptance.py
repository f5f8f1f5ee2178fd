"""The attnbench-fa4 acceptance grid on the GPU: every shape and launch variant against the float32
reference with microbench's tolerance (outputs poisoned with NaN first, so an unwritten element
fails), and a few tiny shapes for compute-sanitizer:

    python -m pytest -q -p no:cacheprovider tests/kernels/test_fa4_acceptance.py
    compute-sanitizer --tool memcheck python -m pytest -q -p no:cacheprovider \\
        tests/kernels/test_fa4_acceptance.py -k sanitizer
"""

import random

import pytest

from attnbench.microbench.base import DecodeShape
from attnbench.microbench.check import TOLERANCE
from attnbench.microbench.fa4_sweep import MMA_MIN_GROUP

# "table": what a call gets (tuning.json, else the fallback); "fallback": tuning.fallback(group)
VARIANTS = {"table": {}, "fallback": "fallback",
            "pipelined": {"num_threads": 128, "tokens_per_thread": 2, "pipeline": True},
            "smem": {"num_threads": 128, "tokens_per_thread": 2, "smem_stages": 3},
            # tensor cores (kernel_mma.py): run on the shapes whose group is wide enough to be swept with it
            "mma": {"num_threads": 128, "tokens_per_thread": 1, "ctas_per_sm": 2, "smem_stages": 3, "mma": True}}
# the sweep's refinements of a winner (fa4_sweep.refinements), both at once: programmatic dependent
# launches and a row's splits shared by the combine's 4 warps
VARIANTS["mma-refined"] = VARIANTS["mma"] | {"pdl": True, "combine_warps": 4}


def _ragged(batch: int, lo: int, hi: int, seed: int = 1) -> tuple[int, ...]:
    rng = random.Random(seed)
    return tuple(rng.randint(lo, hi) for _ in range(batch))


def _shapes() -> list[tuple[DecodeShape, int | None]]:
    """(shape, forced num_splits or None for the planner's choice)."""
    out = []
    for dtype in ("bfloat16", "float16"):
        for d in (128, 64):
            for page in (16, 64):
                for batch, ctx in ((1, 1), (1, 17), (4, 1000), (32, 2048), (1, 32768), (256, 2048)):
                    if (d, page) != (128, 16) and batch == 256:
                        continue  # the big shape once per dtype is enough
                    out.append((DecodeShape.uniform(batch, ctx, head_dim=d, page_size=page, dtype=dtype), None))
    for dtype in ("bfloat16", "float16"):
        out.append((DecodeShape(batch=32, context_lens=_ragged(32, 1, 4000), dtype=dtype), None))
        out.append((DecodeShape(batch=4, context_lens=(1, 17, 1000, 2048), dtype=dtype), 8))
        out.append((DecodeShape(batch=4, context_lens=(5, 16, 31, 33), head_dim=64, page_size=64, dtype=dtype), 3))
    out.append((DecodeShape.uniform(4, 1000, q_heads=32, kv_heads=8), None))  # GQA group 4
    out.append((DecodeShape.uniform(2, 700, q_heads=64, kv_heads=8, head_dim=64), None))  # group 8 (gpt-oss)
    out.append((DecodeShape.uniform(2, 700, q_heads=8, kv_heads=8), 5))  # MHA
    out.append((DecodeShape.uniform(2, 300, q_heads=32, kv_heads=2), 3))  # group 16 (spills, slow)
    out.append((DecodeShape.uniform(3, 600, page_size=128), None))  # vLLM --block-size 128
    return out


def _wide_shapes() -> list[tuple[DecodeShape, int | None]]:
    """Wide GQA groups, where the mma kernel is meant to win: groups 4 (32/8/128) and 8 (64/8/64)
    over the decode grid's corners, both page sizes vLLM uses, then fp16, ragged and forced
    splits, and groups 5-7 and 8 at D128 once each."""
    out = []
    for hq, d in ((32, 128), (64, 64)):
        for page in (16, 128):
            for batch, ctx in ((1, 1), (1, 17), (4, 1000), (32, 2048), (1, 32768), (32, 32768), (256, 2048)):
                out.append((DecodeShape.uniform(batch, ctx, q_heads=hq, kv_heads=8, head_dim=d, page_size=page), None))
        for batch, ctx in ((4, 1000), (1, 32768)):
            out.append((DecodeShape.uniform(batch, ctx, q_heads=hq, kv_heads=8, head_dim=d, dtype="float16"), None))
    out.append((DecodeShape(batch=32, context_lens=_ragged(32, 1, 4000), q_heads=64, kv_heads=8, head_dim=64), None))
    out.append((DecodeShape(batch=4, context_lens=(1, 17, 1000, 2048), q_heads=32, kv_heads=8, dtype="float16"), 8))
    for hq, d in ((40, 128), (48, 64), (56, 128), (64, 128)):  # groups 5, 6, 7, and 8 at D128
        out.append((DecodeShape.uniform(4, 1000, q_heads=hq, kv_heads=8, head_dim=d), None))
    return out


SHAPES = _shapes()
WIDE = _wide_shapes()
SANITIZE = [(DecodeShape(batch=3, context_lens=(1, 40, 100)), 1), (DecodeShape(batch=3, context_lens=(1, 40, 100)), 4),
            (DecodeShape(batch=2, context_lens=(17, 64), head_dim=64, page_size=64, dtype="float16"), 2)]
SANITIZE_WIDE = [(DecodeShape(batch=3, context_lens=(1, 40, 100), q_heads=64, kv_heads=8, head_dim=64), 1),
                 (DecodeShape(batch=3, context_lens=(1, 40, 100), q_heads=64, kv_heads=8, head_dim=64), 4),
                 (DecodeShape(batch=2, context_lens=(17, 64), q_heads=32, kv_heads=8, page_size=128,
                              dtype="float16"), 2)]


def test_covers_the_acceptance_grid():
    shapes = [s for s, _ in SHAPES]
    assert {s.batch for s in shapes} >= {1, 4, 32, 256}
    assert {c for s in shapes for c in s.context_lens} >= {1, 17, 1000, 2048, 32768}
    assert {s.head_dim for s in shapes} == {64, 128}
    assert {s.dtype for s in shapes} == {"bfloat16", "float16"}
    assert {s.page_size for s in shapes} == {16, 64, 128}
    assert {s.q_heads // s.kv_heads for s in shapes} >= {1, 2, 4, 8, 16}
    assert any(s.ragged for s in shapes) and any(n not in (None, 1) for _, n in SHAPES)


def test_wide_groups_cover_the_mma_targets():
    shapes = [s for s, _ in WIDE]
    assert {(s.q_heads, s.kv_heads, s.head_dim) for s in shapes} >= {(32, 8, 128), (64, 8, 64)}
    assert {s.q_heads // s.kv_heads for s in shapes} == {4, 5, 6, 7, 8}
    assert {(s.batch, s.context_lens[0]) for s in shapes if not s.ragged} >= {(1, 32768), (32, 32768), (32, 2048), (256, 2048)}
    assert {s.page_size for s in shapes} == {16, 128} and {s.dtype for s in shapes} == {"bfloat16", "float16"}
    assert any(s.ragged for s in shapes) and any(n not in (None, 1) for _, n in WIDE)
    assert min(s.q_heads // s.kv_heads for s in shapes) >= MMA_MIN_GROUP


def test_sanitize_shapes_are_small_and_exercise_both_kernel_variants():
    for shapes in (SANITIZE, SANITIZE_WIDE):
        assert all(sum(s.context_lens) <= 200 for s, _ in shapes)
        assert {n for _, n in shapes} >= {1, 4}
    assert all(s.q_heads // s.kv_heads >= MMA_MIN_GROUP for s, _ in SANITIZE_WIDE)


def _check(shape: DecodeShape, splits: int | None, tuning) -> None:
    pytest.importorskip("cutlass")
    from dataclasses import asdict

    from attnbench.kernels.fa4_decode import tuning as tuning_mod
    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    if tuning == "fallback":
        tuning = asdict(tuning_mod.fallback(shape.q_heads // shape.kv_heads))
    if tuning.get("mma") and shape.q_heads // shape.kv_heads < MMA_MIN_GROUP:
        pytest.skip(f"the mma kernel is swept for groups of {MMA_MIN_GROUP} or more")
    from attnbench.microbench import check
    from attnbench.microbench.inputs import decode_inputs

    inp = decode_inputs(shape, device="cuda", seed=0)
    try:
        dec = FA4Decode(q_heads=shape.q_heads, kv_heads=shape.kv_heads, head_dim=shape.head_dim,
                        page_size=shape.page_size, dtype=shape.dtype, max_batch=shape.batch, **tuning)
    except ValueError as e:  # this variant's fixed launch configuration does not fit the shape
        pytest.skip(f"variant does not fit: {e}")
    ref = check.reference(shape, inp)
    call = lambda: dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out,  # noqa: E731
                       max_context=max(shape.context_lens), num_splits=splits)
    verdict = check.run_checked(call, inp.out, ref, shape.dtype)
    assert verdict.ok, verdict.describe()
    assert verdict.tolerance == TOLERANCE[shape.dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape, splits", SHAPES, ids=lambda v: v.label() if isinstance(v, DecodeShape) else str(v))
def test_acceptance_shape_matches_the_float32_reference(shape, splits, variant):
    _check(shape, splits, VARIANTS[variant])


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["fallback", "smem"])
@pytest.mark.parametrize("shape, splits", SANITIZE, ids=lambda v: v.label() if isinstance(v, DecodeShape) else str(v))
def test_sanitizer_shapes(shape, splits, variant):
    _check(shape, splits, VARIANTS[variant])


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["table", "mma"])  # what a call runs (the fallback until the sweep), and v4
@pytest.mark.parametrize("shape, splits", WIDE, ids=lambda v: v.label() if isinstance(v, DecodeShape) else str(v))
def test_acceptance_wide_group_matches_the_float32_reference(shape, splits, variant):
    _check(shape, splits, VARIANTS[variant])


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["mma", "mma-refined"])
@pytest.mark.parametrize("shape, splits", SANITIZE_WIDE, ids=lambda v: v.label() if isinstance(v, DecodeShape) else str(v))
def test_sanitizer_shapes_mma(shape, splits, variant):
    _check(shape, splits, VARIANTS[variant])
