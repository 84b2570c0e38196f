#!/usr/bin/env python3
"""Generate web/webinfer.js (the <script src> build) from web/webinfer.mjs (the source).

    python scripts/build_web.py [--check]

The transform is textual and small: ``export`` keywords are dropped, the
default export line is removed, ``import.meta.url`` becomes the URL of the
<script> element, and the exported names are gathered into ``window.webinfer``.
``--check`` exits 1 if web/webinfer.js is not what this would write (a test runs it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "web"
SRC, OUT = WEB / "webinfer.mjs", WEB / "webinfer.js"

HEADER = """\
// GENERATED from webinfer.mjs by scripts/build_web.py: edit webinfer.mjs, then run that script.
// <script src="webinfer.js"></script> defines window.webinfer = {load, cache, WebinferError, ...}.
(function () {
"use strict";
const __webinferScriptURL = (typeof document !== "undefined" && document.currentScript && document.currentScript.src) ||
  (typeof location !== "undefined" ? location.href : "");
"""

_EXPORT = re.compile(r"^export (?:async )?(?:const|class|function|let) (\w+)", re.M)


def build(src: str) -> str:
    names = _EXPORT.findall(src)
    body = re.sub(r"^export default .*$\n?", "", src, flags=re.M)
    body = re.sub(r"^export ", "", body, flags=re.M)
    body = body.replace("import.meta.url", "__webinferScriptURL")
    assert "import " not in re.sub(r"//.*", "", body), "webinfer.mjs must not import anything"
    footer = f"globalThis.webinfer = {{ {', '.join(names)} }};\n}})();\n"
    return HEADER + body.rstrip("\n") + "\n\n" + footer


def main(argv: list[str]) -> int:
    want = build(SRC.read_text())
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != want:
            print(f"{OUT} is stale: run python scripts/build_web.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(want)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
