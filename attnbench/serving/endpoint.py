"""An OpenAI-compatible server named by URL: normalise it, check that it answers, find its model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from attnbench.errors import UserError


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


def served_models(base_url: str, timeout: float = 10.0) -> list[str]:
    """The ids from GET /v1/models; a one-line UserError when the server cannot be reached."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise UserError(f"{base_url}/models answered HTTP {e.code}; is this an OpenAI-compatible server?") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot reach {base_url} ({reason}); is the server running and the URL right?") from None
    try:
        return [m["id"] for m in body["data"]]
    except (KeyError, TypeError):
        raise UserError(f"{base_url}/models did not return an OpenAI model list") from None


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
