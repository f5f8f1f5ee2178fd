"""The one record store: what counts as a bad file, and the three policies for it."""

import gzip
import json

import pytest

from attnbench.errors import UserError
from attnbench.records.record import Record, load, scan


def rec(backend="fa3", **scenario):
    return Record("serve", backend, {"input_len": 1000, **scenario}, {"output_throughput": 1.0}, provenance={})


@pytest.fixture
def tree(tmp_path):
    """Two good records (one gzipped), a torn file, a manifest, a newer schema and an unknown kind."""
    rec("fa3").save(tmp_path / "a" / "fa3.json")
    (tmp_path / "a" / "fa4.json.gz").write_bytes(gzip.compress(json.dumps([rec("fa4").to_json()]).encode()))
    (tmp_path / "torn.json").write_text('{"kind": "serve", "back')
    (tmp_path / "manifest.json").write_text(json.dumps({"steps": [1, 2]}))
    (tmp_path / "new.json").write_text(json.dumps(rec("fi").to_json() | {"schema_version": 99}))
    (tmp_path / "energy.json").write_text(json.dumps({"schema_version": 1, "kind": "energy", "backend": "fa3"}))
    return tmp_path


def test_raise_stops_at_the_first_record_that_does_not_validate(tree):
    with pytest.raises(UserError, match="unknown kind 'energy'"):
        load(tree)
    (tree / "energy.json").unlink()
    with pytest.raises(UserError, match="schema_version 99"):
        load(tree, on_bad="raise")


def test_skip_keeps_the_good_records_and_collect_says_what_the_rest_is(tree):
    assert sorted(r.backend for r in load(tree, on_bad="skip")) == ["fa3", "fa4"]
    found, problems = scan([tree], on_bad="collect")
    assert sorted((f.record.backend, f.path.name) for f in found) == [("fa3", "fa3.json"), ("fa4", "fa4.json.gz")]
    why = {p.path.name: p.problem for p in problems}
    assert set(why) == {"new.json", "energy.json"}  # the torn file and the manifest are not records
    assert "schema_version 99" in why["new.json"] and "unknown kind 'energy'" in why["energy.json"]
    assert next(p for p in problems if p.path.name == "energy.json").obj["backend"] == "fa3"


def test_a_named_file_that_is_not_json_is_an_error_unless_skipped(tree):
    for policy in ("raise", "collect"):
        with pytest.raises(UserError, match="torn.json: not readable as JSON"):
            scan([tree / "torn.json"], on_bad=policy)
    assert load(tree / "torn.json", on_bad="skip") == []
    with pytest.raises(UserError, match="not an attnbench record"):
        load(tree / "manifest.json")
    assert scan([tree / "manifest.json"], on_bad="collect") == ([], [])


def test_a_missing_path_and_an_unknown_policy_are_refused(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        load(tmp_path / "nope", on_bad="skip")
    with pytest.raises(ValueError, match="on_bad"):
        load(tmp_path, on_bad="ignore")


def test_a_record_saved_under_a_gz_name_is_gzipped_and_reads_back(tmp_path):
    rec = Record(kind="serve", backend="fa3", scenario={"input_len": 8}, metrics={"completed": 4})
    path = rec.save(tmp_path / "serve-8x3-r0.json.gz")
    assert json.loads(gzip.decompress(path.read_bytes()))["completed"] == 4
    [back] = load(path)
    assert back.metrics["completed"] == 4 and back.backend == "fa3"
