"""The scripted server's field behaviours, on the wire: what a client of llama-server or
llama-cpp-python's server sees."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from attnbench.serving.scripted_server import Reply, Script, ScriptedServer


def _stream(base_url, prompt, n=3):
    """Two streamed requests on one keep-alive connection -> [(status, headers, events) or error name]."""
    import aiohttp

    async def main():
        out = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            for _ in range(2):
                body = {"model": "m", "prompt": prompt, "max_tokens": n, "stream": True,
                        "stream_options": {"include_usage": True}}
                try:
                    async with session.post(f"{base_url}/completions", json=body) as r:
                        text = await r.text()
                        events = [json.loads(e[5:]) for e in text.split("\n\n")
                                  if e.startswith("data:") and "[DONE]" not in e and r.status == 200]
                        out.append((r.status, dict(r.headers), events))
                except aiohttp.ClientError as e:
                    out.append(type(e).__name__)
        return out

    return asyncio.run(main())


def test_close_after_stream_answers_keep_alive_then_drops_the_next_request_on_that_connection():
    with ScriptedServer(Script(ttft_s=0.001, itl_s=0.001, close_after_stream=True)) as s:
        first, second = _stream(s.base_url, [1, 2, 3])
        assert first[0] == 200 and first[1].get("Connection", "").lower() != "close"
        assert second == "ServerDisconnectedError"
        assert s.dropped == 1 and len(s.requests) == 1


def test_empty_final_event_carries_the_usage():
    with ScriptedServer(Script(ttft_s=0.001, itl_s=0.001, empty_final_event=True)) as s:
        (status, _, events), _ = _stream(s.base_url, [1, 2, 3], n=3)
    assert status == 200 and len(events) == 4
    assert events[-1]["choices"] == [{"index": 0, "text": "", "finish_reason": "length"}]
    assert events[-1]["usage"]["completion_tokens"] == 3
    assert all(e["choices"][0]["text"] == " tok" for e in events[:3])


def test_text_only_server_rejects_token_ids_and_counts_words_or_tokens():
    count = lambda text: len(text)  # noqa: E731 - a "tokenizer" of one token per character
    with ScriptedServer(Script(ttft_s=0.001, itl_s=0.001, text_prompts_only=True)) as s:
        (status, _, _), _ = _stream(s.base_url, [1, 2, 3])
        (_, _, words), _ = _stream(s.base_url, "one two three")
        s.script.count_tokens = count
        (_, _, chars), _ = _stream(s.base_url, ["abcd"])
    assert status == 500
    assert words[-1]["usage"]["prompt_tokens"] == 3 and chars[-1]["usage"]["prompt_tokens"] == 4


def test_version_models_metadata_and_server_header():
    script = Script(version="0.26.0", max_model_len=2048, root="/m", meta={"n_vocab": 7}, server_header="llama.cpp")
    with ScriptedServer(script) as s:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.port}/version") as r:
            assert json.loads(r.read()) == {"version": "0.26.0"} and r.headers["Server"] == "llama.cpp"
        with urllib.request.urlopen(f"{s.base_url}/models") as r:
            (m,) = json.loads(r.read())["data"]
        assert (m["max_model_len"], m["root"], m["meta"]) == (2048, "/m", {"n_vocab": 7})
    with ScriptedServer(Script()) as s:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{s.port}/version")
        assert e.value.code == 404


def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.read().decode()


def test_chat_streams_scripted_deltas_with_the_usage_last():
    with ScriptedServer(Script(ttft_s=0.001, itl_s=0.001)) as s:
        text = _post(f"{s.base_url}/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "a b"}],
                                                        "max_tokens": 3, "stream": True,
                                                        "stream_options": {"include_usage": True}})
    events = [json.loads(e[5:]) for e in text.split("\n\n") if e.startswith("data:") and "[DONE]" not in e]
    assert [e["choices"][0]["delta"]["content"] for e in events[:3]] == [" tok"] * 3
    assert {e["object"] for e in events} == {"chat.completion.chunk"} and text.rstrip().endswith("[DONE]")
    assert events[3]["choices"] == [] and events[3]["usage"]["prompt_tokens"] == 2
    assert events[3]["usage"]["completion_tokens"] == 3


def test_a_reply_answers_chat_and_responses_and_leaves_completions_scripted():
    class Answering(Script):
        def reply(self, path, body, n):
            return None if path == "completions" else Reply(["Answer", ": B"], "stop", reasoning="hmm", usage=(5, 2))

    with ScriptedServer(Answering(ttft_s=0.001, itl_s=0.001)) as s:
        chat = json.loads(_post(f"{s.base_url}/chat/completions", {"messages": [{"role": "user", "content": "q"}]}))
        resp = json.loads(_post(f"{s.base_url}/responses", {"input": [{"role": "user", "content": "q"}]}))
        done = json.loads(_post(f"{s.base_url}/completions", {"prompt": [1, 2], "max_tokens": 2}))
        assert s.paths == ["chat", "responses", "completions"]
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "Answer: B", "reasoning_content": "hmm"}
    assert chat["choices"][0]["finish_reason"] == "stop" and chat["usage"]["total_tokens"] == 7
    assert [o["type"] for o in resp["output"]] == ["reasoning", "message"] and resp["status"] == "completed"
    assert resp["output"][1]["content"][0]["text"] == "Answer: B" and resp["usage"]["output_tokens"] == 2
    assert done["choices"][0]["text"] == " tok tok" and done["usage"]["completion_tokens"] == 2



def _pids_serving(model: str) -> set[int]:
    """Processes whose command line runs the scripted server for `model`."""
    from pathlib import Path

    found = set()
    for d in Path("/proc").iterdir():
        try:
            words = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"attnbench.serving.scripted_server" in words and model.encode() in words:
            found.add(int(d.name))
    return found


def test_spawned_runs_in_processes_of_its_own_and_leaves_none_behind():
    import os
    import urllib.request

    from attnbench.serving import scripted_server

    model = f"spawn-test-{os.getpid()}"
    with scripted_server.spawned(0.001, 0.001, workers=2, model=model) as url:
        models = json.loads(urllib.request.urlopen(url + "/models", timeout=5).read())
        running = _pids_serving(model)
    assert [m["id"] for m in models["data"]] == [model]
    assert len(running) == 2 and os.getpid() not in running  # two server processes, neither this one
    assert _pids_serving(model) == set()


def _somaxconn() -> int:
    try:
        return int(open("/proc/sys/net/core/somaxconn").read())
    except (OSError, ValueError):
        return 0


@pytest.mark.skipif(_somaxconn() < 512, reason="the kernel caps listen backlogs below 512 (net.core.somaxconn)")
def test_connections_wait_to_be_accepted_instead_of_being_dropped():
    """Hundreds of connections arriving while the server is busy wait in its accept queue. With
    aiohttp's default backlog of 128 the rest were dropped and TCP retried them a second later."""
    import socket
    import threading
    import time

    class Busy(Script):
        def reply(self, path, body, n):
            if n == 0:
                time.sleep(2.0)  # holds the server's event loop: nothing is accepted meanwhile
            return None

    srv = ScriptedServer(Busy()).start()
    socks = []
    try:
        first = threading.Thread(target=lambda: urllib.request.urlopen(urllib.request.Request(
            srv.base_url + "/completions", data=json.dumps({"model": "m", "prompt": "x", "max_tokens": 1}).encode(),
            headers={"Content-Type": "application/json"}), timeout=30).read())
        first.start()
        time.sleep(0.5)  # request 0 is being answered: the loop sleeps
        for _ in range(300):
            socks.append(socket.create_connection((srv.host, srv.port), timeout=1.0))  # raises when dropped
        first.join()
    finally:
        for s in socks:
            s.close()
        srv.stop()
    assert len(socks) == 300
