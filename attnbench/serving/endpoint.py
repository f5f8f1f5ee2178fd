"""An OpenAI-compatible server named by URL: normalise it, check that it answers, find its model,
say what it tells about itself, and whether it takes token-id prompts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from attnbench.errors import UserError


def named(item: str) -> tuple[str | None, str]:
    """'fa3=http://host:8001' -> ('fa3', 'http://host:8001'); a bare URL -> (None, URL). The one
    NAME=URL form every command's --endpoint takes (a name holds no '/' or ':', a URL does)."""
    name, sep, url = item.partition("=")
    if sep and name.strip() and not any(c in name for c in "/:") and url.strip():
        return name.strip(), url.strip()
    return None, item


def normalize(url: str) -> str:
    """'host:8000', 'http://host:8000', 'http://host:8000/v1/' -> 'http://host:8000/v1'."""
    url = url.strip()
    if not url:
        raise UserError("--endpoint is empty; pass the server's base URL, e.g. http://127.0.0.1:8000")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--endpoint {url!r} is not an http(s) URL; pass e.g. http://127.0.0.1:8000")
    path = parts.path.rstrip("/")
    for suffix in ("/completions", "/chat/completions", "/models"):
        if path.endswith("/v1" + suffix):
            path = path[: -len(suffix)]
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def _model_list(base_url: str, timeout: float = 10.0) -> tuple[list[dict], dict]:
    """GET /v1/models -> (its entries, the response headers); a one-line UserError when the
    server cannot be reached or answers something else."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as r:
            body, headers = json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        raise UserError(f"{base_url}/models answered HTTP {e.code}; is this an OpenAI-compatible server?") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot reach {base_url} ({reason}); is the server running and the URL right?") from None
    try:
        entries = list(body["data"])
        [m["id"] for m in entries]
    except (KeyError, TypeError):
        raise UserError(f"{base_url}/models did not return an OpenAI model list") from None
    return entries, headers


def served_models(base_url: str, timeout: float = 10.0) -> list[str]:
    """The ids from GET /v1/models; a one-line UserError when the server cannot be reached."""
    return [m["id"] for m in _model_list(base_url, timeout)[0]]


def model_info(base_url: str, model: str | None = None, timeout: float = 10.0) -> dict:
    """The /v1/models entry of `model` (else the first): vLLM adds root and max_model_len,
    llama.cpp's server a `meta` table with n_vocab and n_ctx_train."""
    entries = _model_list(base_url, timeout)[0]
    return next((m for m in entries if m["id"] == model), entries[0] if entries else {})


UNKNOWN = "unknown"


def _root(base_url: str) -> str:
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(1 << 20)
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (OSError, ValueError):
        return 0, b""


def describe(base_url: str, model: str | None = None, timeout: float = 5.0) -> dict:
    """What a running server tells about itself, for the record of an endpoint run: its software
    (the Server header, /version), the served model (/v1/models: id, root, max_model_len) and
    whether it exposes Prometheus /metrics. What it does not tell (its GPU, driver, torch) is
    "unknown": the client machine's are not the server's."""
    entries, headers = _model_list(base_url, timeout)
    entry = next((m for m in entries if m["id"] == model), entries[0] if entries else {})
    root = _root(base_url)
    status, body = _get(f"{root}/version", timeout)
    version = UNKNOWN
    if status == 200:
        try:
            version = str(json.loads(body).get("version") or UNKNOWN)
        except (ValueError, AttributeError):
            pass
    status, body = _get(f"{root}/metrics", timeout)
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    return {
        "endpoint": base_url,
        "server": headers.get("Server") or headers.get("server") or UNKNOWN,
        "owned_by": entry.get("owned_by") or UNKNOWN,
        "version": version,
        "model": entry.get("id") or UNKNOWN,
        "models": [m["id"] for m in entries],
        "root": entry.get("root") or UNKNOWN,
        # llama.cpp: n_ctx is what one request may use (the context split over its slots)
        "max_model_len": entry.get("max_model_len") or meta.get("n_ctx") or meta.get("n_ctx_train") or UNKNOWN,
        "vocab_size": meta.get("n_vocab") or UNKNOWN,
        "metrics": status == 200 and b"# TYPE" in body,
        "gpu": UNKNOWN, "driver": UNKNOWN, "torch": UNKNOWN,
    }


def accepts_token_ids(base_url: str, model: str, timeout: float = 60.0) -> bool | str:
    """Whether the server takes a prompt given as token ids (one request, one output token):
    True, or a one-line reason it does not (its HTTP status and message). Some servers (e.g.
    llama-cpp-python's) take only text."""
    body = json.dumps({"model": model, "prompt": [100, 101, 102, 103], "max_tokens": 1, "temperature": 0.0}).encode()
    req = urllib.request.Request(f"{base_url}/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return True
    except urllib.error.HTTPError as e:
        text = e.read(2000).decode("utf-8", "replace")
        try:
            text = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pass
        return f"HTTP {e.code}: {' '.join(str(text).split())[:200]}"
    except (OSError, ValueError) as e:
        return f"no answer ({getattr(e, 'reason', e)})"


def pick_model(base_url: str, model: str | None) -> str:
    """The model to request: --model when given (checked against the server's list), else the
    server's only/first model."""
    models = served_models(base_url)
    if model is None:
        if not models:
            raise UserError(f"{base_url} serves no model; pass --model NAME")
        return models[0]
    if models and model not in models:
        raise UserError(f"{base_url} does not serve {model!r} (it serves: {', '.join(models)}); fix --model")
    return model
