"""What an endpoint tells about itself, and whether it takes token-id prompts, against real local
servers."""

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.errors import UserError
from attnbench.serving import endpoint
from attnbench.serving.scripted_server import Script, ScriptedServer


def test_describe_reports_what_the_server_tells_and_unknown_for_the_rest():
    script = Script(model="qwen", version="0.26.0", max_model_len=4096, root="/models/qwen", server_header="uvicorn")
    with ScriptedServer(script) as s:
        d = endpoint.describe(s.base_url)
    assert (d["endpoint"], d["model"], d["models"]) == (s.base_url, "qwen", ["qwen"])
    assert (d["version"], d["max_model_len"], d["root"], d["server"]) == ("0.26.0", 4096, "/models/qwen", "uvicorn")
    assert d["gpu"] == d["driver"] == d["torch"] == "unknown"
    assert isinstance(d["metrics"], bool)


def test_describe_a_server_that_tells_little():
    with ScriptedServer(Script(model="smol", meta={"n_vocab": 49152, "n_ctx": 2048, "n_ctx_train": 8192})) as s:
        d = endpoint.describe(s.base_url)
    assert d["version"] == "unknown" and d["root"] == "unknown"  # no /version
    assert d["max_model_len"] == 2048 and d["vocab_size"] == 49152  # llama.cpp's meta: a slot's context


def test_describe_sees_prometheus_metrics_and_their_absence():
    with ScriptedServer(Script(model="m", metrics=True)) as s:
        assert endpoint.describe(s.base_url)["metrics"] is True
    with ScriptedServer(Script(model="m", metrics=False)) as s:
        assert endpoint.describe(s.base_url)["metrics"] is False


def test_token_id_prompts_probe():
    with ScriptedServer(Script(ttft_s=0.001, itl_s=0.001)) as s:
        assert endpoint.accepts_token_ids(s.base_url, "scripted") is True
    with ScriptedServer(Script(ttft_s=0.001, itl_s=0.001, text_prompts_only=True)) as s:
        why = endpoint.accepts_token_ids(s.base_url, "scripted")
    assert why == "HTTP 500: prompt must be a string or a list of strings"
    assert endpoint.accepts_token_ids("http://127.0.0.1:9/v1", "m").startswith("no answer")


def test_unreachable_endpoint_is_one_line():
    with pytest.raises(UserError, match="cannot reach"):
        endpoint.describe("http://127.0.0.1:9/v1")


def test_empty_endpoint_says_the_url_is_empty():
    result = CliRunner().invoke(app, ["serve-bench", "--endpoint", ""])
    assert isinstance(result.exception, UserError) and "--endpoint is empty" in str(result.exception)


@pytest.mark.parametrize("item, want", [
    ("fa3=http://127.0.0.1:8001", ("fa3", "http://127.0.0.1:8001")),
    (" prod = 10.0.0.5:8000 ", ("prod", "10.0.0.5:8000")),
    ("http://127.0.0.1:8001", (None, "http://127.0.0.1:8001")),
    ("http://host:8001/v1?x=1", (None, "http://host:8001/v1?x=1")),  # '=' inside a URL names nothing
    ("=http://host", (None, "=http://host")),
])
def test_every_command_reads_name_equals_url_the_same_way(item, want):
    assert endpoint.named(item) == want
