"""attnbench-fa4's plain-Python side (no CuTe DSL needed): kernel configs, its declared limits,
the per-shape-class tuning table and what a decoder compiles for a server's limits."""

import json

import pytest

from attnbench.kernels.fa4_decode import limits, tuning
from attnbench.kernels.fa4_decode.config import DecodeConfig
from attnbench.kernels.fa4_decode.tuning import Row, Table, Tuning

V3 = Tuning(128, 2, 6, smem_stages=3)


def test_config_derives_one_16_byte_load_per_lane_per_row():
    cfg = DecodeConfig("bfloat16", 128, group=2, page_size=16, write_final=False)
    assert (cfg.vec, cfg.lanes_per_row, cfg.rows) == (8, 16, 16)
    assert DecodeConfig("float16", 64, 2, 16, True).rows == 32


@pytest.mark.parametrize("kw, problem", [
    ({"dtype": "float32"}, "bfloat16/float16"),
    ({"head_dim": 96}, "head_dim"),
    ({"group": 32}, "GQA group"),
    ({"num_threads": 200}, "num_threads"),
    ({"head_dim": 256, "group": 8, "num_threads": 1024}, "shared memory"),
    ({"smem_stages": 2, "pipeline": True}, "pick one"),
    ({"smem_stages": 4, "tokens_per_thread": 8}, "shared memory"),
])
def test_config_rejects_what_the_kernel_cannot_do(kw, problem):
    args = {"dtype": "bfloat16", "head_dim": 128, "group": 2, "page_size": 16, "write_final": True} | kw
    with pytest.raises(ValueError, match=problem):
        DecodeConfig(**args)


MMA_KW = {"dtype": "bfloat16", "head_dim": 128, "group": 8, "page_size": 16, "write_final": False,
          "num_threads": 128, "tokens_per_thread": 1, "smem_stages": 3, "mma": True}


def test_mma_config_sizes_its_tiles_and_ring_from_head_dim_and_warps():
    cfg = DecodeConfig(**MMA_KW)
    assert (cfg.warps, cfg.mma_tile_tokens) == (4, 16)
    assert DecodeConfig(**MMA_KW | {"head_dim": 64}).mma_tile_tokens == 32  # 4 KB of K per tile either way
    # Q tile + 4 warps x 3 stages x (K + V) x 4 KB + row stats + alignment: two CTAs fit an SM's 228 KB
    assert cfg.smem_bytes() == 16 * 128 * 2 + 4 * 3 * 8192 + 512 + 2048
    assert 2 * cfg.smem_bytes() < 228 * 1024 < 3 * cfg.smem_bytes()
    assert 3 * DecodeConfig(**MMA_KW | {"smem_stages": 2}).smem_bytes() < 228 * 1024
    assert DecodeConfig(**MMA_KW | {"group": 16, "page_size": 1})  # any page size, the whole M tile


@pytest.mark.parametrize("kw, problem", [
    ({"head_dim": 256}, "head_dim 256 with mma=True"),
    ({"group": 17}, "GQA group"),
    ({"num_threads": 96 + 8}, "whole warps"),
    ({"num_threads": 1024}, "whole warps"),
    ({"tokens_per_thread": 2}, "tokens_per_thread=1"),
    ({"pipeline": True}, "pipeline off"),
    ({"smem_stages": 1}, "smem_stages >= 2"),
    ({"num_threads": 512, "smem_stages": 4}, "shared memory"),
])
def test_mma_config_rejects_what_the_tensor_core_kernel_cannot_do(kw, problem):
    with pytest.raises(ValueError, match=problem):
        DecodeConfig(**MMA_KW | kw)


def test_mma_limits_are_declared_beside_the_kernels():
    assert limits.mma_unsupported(head_dim=64, group=8, page_size=16, dtype="float16") is None
    assert "head_dim 256" in limits.mma_unsupported(head_dim=256, group=8, page_size=16, dtype="bfloat16")
    assert "head_dim 96" in limits.mma_unsupported(head_dim=96, group=8, page_size=16, dtype="bfloat16")
    assert limits.MMA_MAX_GROUP <= limits.MAX_GROUP and set(limits.MMA_HEAD_DIMS) <= set(limits.HEAD_DIMS)


def test_mma_tunings_round_trip_and_reach_the_kernel_config():
    from attnbench.kernels.fa4_decode.launcher import decode_configs

    t = Tuning(128, 1, 2, smem_stages=3, mma=True)
    assert t.spec() == "num_threads=128,tokens_per_thread=1,ctas_per_sm=2,smem_stages=3,mma=1"
    assert Tuning.parse(t.spec()) == Tuning.parse(t.spec().replace("mma=1", "mma=true")) == t
    final, split = decode_configs(t, dtype="float16", head_dim=64, group=8, page_size=16)
    assert final.mma and split.mma and final.write_final and not split.write_final
    assert not any(c.mma for c in decode_configs(V3, dtype="float16", head_dim=64, group=2, page_size=16))


def test_limits_are_the_ones_every_caller_asks():
    assert limits.unsupported(head_dim=128, group=2, page_size=16, dtype="bfloat16") is None
    assert limits.unsupported(head_dim=64, group=16, page_size=128, dtype="float16") is None
    assert "head_dim 96" in limits.unsupported(head_dim=96, group=2, page_size=16, dtype="bfloat16")
    assert "17 query heads" in limits.unsupported(head_dim=128, group=17, page_size=16, dtype="bfloat16")
    assert "q_len 2" in limits.unsupported(head_dim=128, group=2, page_size=16, dtype="bfloat16", q_len=2)
    assert "float32" in limits.unsupported(head_dim=128, group=2, page_size=16, dtype="float32")


def test_no_other_module_redeclares_the_limits():
    """One declaration: the numbers appear in limits.py only (the kernel config, launcher, vLLM
    backend and microbench adapter import them)."""
    from pathlib import Path

    root = Path(limits.__file__).parents[2]
    for rel in ("kernels/fa4_decode/kernel.py", "kernels/fa4_decode/launcher.py", "kernels/vllm_backend.py",
                "microbench/adapters/attnbench_fa4.py", "kernels/fa4_decode/config.py",
                "kernels/fa4_decode/kernel_mma.py"):
        text = (root / rel).read_text()
        assert "(64, 128, 256)" not in text and "MAX_GROUP = 16" not in text, rel
        assert "(64, 128)" not in text and "227 * 1024" not in text, rel
        assert "limits" in text or rel.endswith(("kernel.py", "kernel_mma.py")), rel


# --- the tuning table --------------------------------------------------------------------------

def _table(*rows):
    return Table(tuple(rows), {"t": "test"})


def _grid_rows(measured=()):
    out = []
    for b in (1, 32, 256):
        for c in (1024, 8192, 32768):
            out.append(Row(2, 128, 16, b, c, tuning=dict(measured).get((b, c)), source="t"))
    return out


def test_spec_round_trips_in_the_environment_format():
    assert V3.spec() == "num_threads=128,tokens_per_thread=2,ctas_per_sm=6,smem_stages=3"
    assert Tuning.parse(V3.spec()) == V3
    assert Tuning.parse("num_threads=256, tokens_per_thread=2, ctas_per_sm=2, pipeline=true") == Tuning(256, 2, 2, True)
    with pytest.raises(ValueError, match="ATTNBENCH_FA4_TUNING"):
        Tuning.parse("threads=128")


def test_fallback_fits_two_or_more_ctas_per_sm_and_narrows_with_the_group():
    assert tuning.fallback(2).num_threads * tuning.fallback(2).ctas_per_sm <= 1024
    assert [tuning.fallback(g).tokens_per_thread for g in (1, 2, 4, 8)] == [4, 4, 2, 1]


def test_a_call_takes_the_nearest_class_and_unmeasured_classes_borrow_the_nearest_measured_winner():
    t = _table(*_grid_rows({(256, 1024): V3}))
    choose = lambda b, c: t.choose(group=2, head_dim=128, page_size=16, batch=b, context=c)  # noqa: E731
    assert choose(256, 1024) == V3
    assert choose(200, 1500) == V3  # log2-nearest: batch 256, context 1024 (1500 is nearer 1024 than 8192)
    assert choose(512, 100) == V3  # beyond the grid: its edge
    assert choose(32, 1024) == V3  # an unmeasured class: the only measured row of its geometry
    assert t.choose(group=4, head_dim=128, page_size=16, batch=256, context=1024) == tuning.fallback(4)  # none measured
    assert t.row(group=2, head_dim=128, page_size=128, batch=1, context=1) is None


def test_the_nearest_measured_row_is_nearest_in_batch_first_then_in_context():
    wide, narrow = Tuning(256, 2, 3), Tuning(64, 1, 4)
    t = _table(*_grid_rows({(1, 1024): wide, (256, 1024): V3, (256, 32768): narrow}))
    choose = lambda b, c: t.choose(group=2, head_dim=128, page_size=16, batch=b, context=c)  # noqa: E731
    assert choose(1, 32768) == wide  # batch 1 is measured (at 1024): batch wins over context
    assert choose(32, 1024) == V3  # 32 is nearer 256 than 1 in log2 (3 against 5 doublings)
    assert choose(32, 32768) == narrow and choose(256, 8192) == narrow  # then the nearest context
    row = t.row(group=2, head_dim=128, page_size=16, batch=32, context=8192)
    assert row.tuning is None and t.nearest_measured(row).context == 32768


def test_reachable_lists_exactly_the_tunings_calls_within_the_limits_can_choose():
    wide = Tuning(256, 2, 3)
    t = _table(*_grid_rows({(256, 32768): V3, (1, 1024): wide}))
    reach = lambda b, c: t.reachable(group=2, head_dim=128, page_size=16, max_batch=b, max_context=c)  # noqa: E731
    assert reach(256, 32768) == [wide, V3]
    assert reach(1, 32768) == [wide]  # batch 1 never leaves its measured row
    assert reach(8, 32768) == [wide, V3]  # 8 reaches the 32 row, which borrows from 256 (nearer than 1)
    assert reach(200, 20000) == [wide, V3]  # 200 -> 256, 20000 -> 32768
    only = _table(*[r for r in _grid_rows({(b, c): V3 for b in (1, 32, 256) for c in (1024, 8192, 32768)})])
    assert only.reachable(group=2, head_dim=128, page_size=16, max_batch=64, max_context=9000) == [V3]
    assert t.reachable(group=8, head_dim=64, page_size=16, max_batch=1, max_context=1) == [tuning.fallback(8)]
    unmeasured = _table(*_grid_rows())
    assert unmeasured.reachable(group=2, head_dim=128, page_size=16, max_batch=256, max_context=32768) == [tuning.fallback(2)]


def test_table_saves_one_row_per_line_and_loads_back(tmp_path):
    t = _table(*_grid_rows({(256, 1024): V3}))
    path = t.save(tmp_path / "tuning.json")
    lines = path.read_text().splitlines()
    assert sum('"batch"' in line for line in lines) == len(t.rows)
    back = tuning.load(path)
    assert back.rows == t.rows and back.sources == {"t": "test"}
    merged = back.merged([Row(2, 128, 16, 32, 1024, tuning=V3, gbps=4000.0, source="new")], {"new": "x"})
    assert merged.choose(group=2, head_dim=128, page_size=16, batch=32, context=1024) == V3
    assert len(merged.rows) == len(t.rows) and set(merged.sources) == {"t", "new"}


def test_bad_tables_say_what_is_wrong(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="unreadable"):
        tuning.load(bad)
    bad.write_text(json.dumps({"kind": "other"}))
    with pytest.raises(ValueError, match="not an attnbench-fa4 tuning table"):
        tuning.load(bad)
    with pytest.raises(ValueError, match="two rows"):
        _table(Row(2, 128, 16, 1, 1024), Row(2, 128, 16, 1, 1024))


def test_committed_table_covers_the_decode_grid_and_holds_the_h200_measurement():
    t = tuning.table()
    geometries = {r.geometry for r in t.rows}
    assert geometries == {(g, d, p) for g, d in ((2, 128), (4, 128), (8, 64)) for p in (16, 128)}
    assert {r.batch for r in t.rows} == {1, 4, 8, 32, 128, 256}
    assert {r.context for r in t.rows} == {1024, 2048, 4096, 8192, 16384, 32768}
    measured = {(r.geometry, r.batch, r.context): r for r in t.rows if r.tuning is not None}
    # groups 2 (16/8/128) and 4 (32/8/128): v4 on tensor cores won every shape the H200 sweeps measured
    shapes = {(256, 2048), (32, 2048), (1, 32768)}
    assert set(measured) == {((g, 128, 16), b, c) for g in (2, 4) for b, c in shapes}
    assert all(r.gbps > r.fallback_gbps for r in measured.values())
    assert all(r.tuning.mma for r in measured.values())
    assert set(t.sources) == {r.source for r in measured.values()}  # each run described once, none orphaned
