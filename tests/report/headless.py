"""Open a page in Debian's headless chromium over the DevTools protocol and say what a reader would
see: console errors, uncaught exceptions, failed loads, which images decoded, how many tables."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

import aiohttp

from attnbench import procs

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# resolves once every image has loaded and decoded, or failed: on a loaded machine that can take
# much longer than the load event
SETTLE = """Promise.all([...document.images].map(i =>
  (i.complete ? Promise.resolve() : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); }))
    .then(() => i.naturalWidth > 0 ? i.decode().catch(() => null) : null))).then(() => true)"""
PROBE = """JSON.stringify({
  images: document.images.length,
  decoded: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
  tables: document.querySelectorAll('table').length,
  sections: [...document.querySelectorAll('section')].map(s => s.id),
  title: document.title})"""


def browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


@dataclass
class Page:
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    images: int = 0
    decoded: int = 0
    tables: int = 0
    sections: list[str] = field(default_factory=list)
    title: str = ""


async def _visit(ws_url: str, url: str, timeout_s: float) -> Page:
    page = Page()
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        next_id = 0
        pending: dict[int, asyncio.Future] = {}
        loaded = asyncio.get_running_loop().create_future()

        async def reader():
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in pending:
                    pending.pop(data["id"]).set_result(data)
                method, params = data.get("method"), data.get("params", {})
                if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    page.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                              for a in params.get("args", [])))
                elif method == "Runtime.exceptionThrown":
                    details = params["exceptionDetails"]
                    page.errors.append(f"exception: {details.get('text', '?')} "
                                       f"{details.get('exception', {}).get('description', '')}".strip())
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    page.errors.append("log: " + params["entry"].get("text", "?"))
                elif method == "Page.loadEventFired" and not loaded.done():
                    loaded.set_result(True)

        async def call(method: str, **params):
            nonlocal next_id
            next_id += 1
            fut = asyncio.get_running_loop().create_future()
            pending[next_id] = fut
            await ws.send_str(json.dumps({"id": next_id, "method": method, "params": params}))
            return await asyncio.wait_for(fut, timeout_s)

        task = asyncio.create_task(reader())
        try:
            for domain in ("Runtime", "Log", "Page"):
                await call(f"{domain}.enable")
            await call("Page.navigate", url=url)
            await asyncio.wait_for(loaded, timeout_s)
            await call("Runtime.evaluate", expression=SETTLE, awaitPromise=True, returnByValue=True)
            await asyncio.sleep(0.3)  # late console messages
            result = await call("Runtime.evaluate", expression=PROBE, returnByValue=True)
            probe = json.loads(result["result"]["result"]["value"])
            page.images, page.decoded, page.tables = probe["images"], probe["decoded"], probe["tables"]
            page.sections, page.title = probe["sections"], probe["title"]
        finally:
            task.cancel()
    return page


def open_page(url: str, timeout_s: float = 60.0) -> Page:
    exe = browser()
    assert exe, "no chromium"
    # chromium's renderer and utility children outlive a terminated main process for a moment and
    # still write the profile's cache: stop the whole group before the profile is removed
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([exe, "--headless", "--disable-gpu", "--no-sandbox", "--remote-debugging-port=0",
                                 f"--user-data-dir={profile}", "--no-first-run", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            port = None
            for line in proc.stderr:
                m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
                if m:
                    port = int(m.group(1))
                    break
            assert port, "chromium did not start its DevTools endpoint"

            async def main():
                async with aiohttp.ClientSession() as s:
                    async with s.get(f"http://127.0.0.1:{port}/json/list") as r:
                        targets = await r.json(content_type=None)
                ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                return await _visit(ws_url, url, timeout_s)

            return asyncio.run(main())
        finally:
            procs.stop_group(proc, grace_s=10)
            proc.stderr.close()
