#!/usr/bin/env python3
"""Chat with the default model running in a browser: serve the chat page, drive it in headless Chromium.

    python scripts/browser_chat.py ["message" ...] [--port 8000] [--keep] [--serve-only]

The chat page (web/index.html) is served locally and its URL printed (open it
in any browser too).  Headless Chromium then loads the page exactly as a user
would: Pyodide boots in a Web Worker, installs the webinfer wheel, downloads
the model into the browser's cache and loads it; each message is typed into
the page and the answer is streamed to this terminal as the page shows it.

--keep keeps serving after the answers (Ctrl-C stops); --serve-only skips the
headless browser and just serves the page.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chromium  # noqa: E402
import serve  # noqa: E402

DEFAULT_MESSAGE = "What is the capital of France? Answer in one sentence."


def stream_answer(b: chromium.Browser, message: str, out=sys.stdout) -> str:
    before = b.driver.execute_script("return chatPage.answers")
    b.driver.execute_script("""
        const box = document.getElementById("prompt");
        box.value = arguments[0];
        document.getElementById("form").requestSubmit();
    """, message)
    shown = ""
    while True:
        text, done = b.driver.execute_script("""
            const a = document.querySelectorAll("#messages .assistant");
            return [a.length ? a[a.length - 1].textContent : "", chatPage.answers > arguments[0]];
        """, before)
        if len(text) > len(shown):
            out.write(text[len(shown):])
            out.flush()
            shown = text
        if done:
            break
        time.sleep(0.05)
    out.write("\n")
    errors = b.driver.execute_script(
        "return [...document.querySelectorAll('#messages .error')].map((e) => e.textContent)")
    for e in errors:
        print(f"[chat] {e}", file=sys.stderr)
    speed = b.driver.execute_script("return document.getElementById('speed').textContent")
    print(f"[chat] {speed}", file=sys.stderr)
    return shown


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("message", nargs="*", help=f"message(s) to send (default: {DEFAULT_MESSAGE!r})")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--keep", action="store_true", help="keep serving the page after answering")
    ap.add_argument("--serve-only", action="store_true", help="serve the page; no headless browser")
    a = ap.parse_args(argv)

    serve.build_wheel()
    try:
        srv = serve.start(port=a.port)
    except OSError:
        srv = serve.start(port=0)  # the port is taken: any free one
    url = srv.url
    print(f"[chat] chat page: {url}  (open it in a browser)", file=sys.stderr, flush=True)
    if a.serve_only:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
    b = chromium.Browser()
    try:
        query = urlencode({"temperature": a.temperature, "max_tokens": a.max_tokens})
        b.get(f"{url}index.html?{query}")
        print("[chat] headless Chromium: loading the engine in a Web Worker...", file=sys.stderr, flush=True)
        last = ""
        t0 = time.monotonic()
        while True:
            state, text = b.driver.execute_script(
                "return [window.chatPage ? chatPage.state : 'loading', document.getElementById('progress-text').textContent]")
            if text != last and text:
                if sys.stderr.isatty():
                    print(f"\r[chat] {text[:100]:<100}", end="", file=sys.stderr, flush=True)
                elif text.split(" ")[0] != last.split(" ")[0]:  # a log: one line per phase
                    print(f"[chat] {text}", file=sys.stderr, flush=True)
                last = text
            if state != "loading":
                break
            if time.monotonic() - t0 > 600:
                raise TimeoutError("the chat page did not load in 10 minutes:\n" + b.console_tail())
            time.sleep(0.1)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        if state == "error":
            print(f"[chat] {b.driver.execute_script('return chatPage.error')}", file=sys.stderr)
            return 1
        loaded = b.driver.execute_script("return document.getElementById('speed').textContent")
        print(f"[chat] {loaded}", file=sys.stderr)
        for m in a.message or [DEFAULT_MESSAGE]:
            print(f"> {m}")
            stream_answer(b, m)
        if a.keep:
            print(f"[chat] still serving {url} (Ctrl-C stops)", file=sys.stderr)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        b.quit()
        srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
