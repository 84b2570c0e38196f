"""The chat page (web/index.html) end to end in headless Chromium: load, ask, streamed answer, stop.

The model is asked for HTML, and its answer must show up as text: the
assistant's bubble holds the markup as characters and no elements.
A screenshot is saved to test-artifacts/chat-page.png and checked not to be blank.
"""

from __future__ import annotations

import base64

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def chat(chrome, web_server):
    chrome.get(web_server.url + "index.html?temperature=0&max_tokens=40")
    chrome.wait_for("window.chatPage && window.chatPage.state !== 'loading'", timeout_s=300)
    assert chrome.driver.execute_script("return chatPage.state") == "ready", chrome.driver.execute_script(
        "return chatPage.error")
    return chrome


def send(page, text):
    page.driver.execute_script("""
        window.__seen = [];
        const target = document.getElementById("messages");
        new MutationObserver(() => {
          const last = target.querySelector(".assistant:last-of-type");
          if (last) window.__seen.push(last.textContent.length);
        }).observe(target, {subtree: true, childList: true, characterData: true});
        const box = document.getElementById("prompt");
        box.value = arguments[0];
        box.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true}));
    """, text)


def test_streamed_answer_is_text_not_html(chat, artifacts):
    before = chat.driver.execute_script("return chatPage.answers")
    send(chat, "Write a minimal HTML page.")
    chat.wait_for(f"chatPage.answers > {before}", timeout_s=240)
    r = chat.driver.execute_script("""
        const bubbles = [...document.querySelectorAll("#messages .assistant")];
        const last = bubbles[bubbles.length - 1];
        return {text: last.textContent, children: last.childElementCount, seen: window.__seen,
                user: document.querySelector("#messages .user").textContent,
                speed: document.getElementById("speed").textContent,
                caps: document.getElementById("caps").textContent,
                h1: document.querySelectorAll("#messages h1, #messages p, #messages body").length};
    """)
    assert "<h1>" in r["text"] or "<html>" in r["text"], r["text"]
    assert r["children"] == 0 and r["h1"] == 0  # markup shown as characters, no elements made
    assert len(set(r["seen"])) > 3  # the answer grew piece by piece
    assert r["user"] == "Write a minimal HTML page."
    assert "tok/s" in r["speed"] and "first token" in r["speed"]
    assert '"wasm_simd": true' in r["caps"]

    png = base64.b64decode(chat.cdp("Page.captureScreenshot", {"format": "png"})["data"])
    (artifacts / "chat-page.png").write_bytes(png)
    colors = chat.run("""
        const img = new Image();
        img.src = "data:image/png;base64," + args[0];
        await img.decode();
        const c = document.createElement("canvas");
        c.width = img.width; c.height = img.height;
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        let dark = 0;
        for (let i = 0; i < d.length; i += 4) {
          seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
          if (d[i] + d[i + 1] + d[i + 2] < 200) dark++;
        }
        return {distinct: seen.size, dark, w: c.width, h: c.height};
    """, base64.b64encode(png).decode())
    assert colors["w"] > 500 and colors["distinct"] > 50 and colors["dark"] > 1000, colors


def test_stop_button(chat):
    before = chat.driver.execute_script("return chatPage.answers")
    chat.driver.execute_script("""
        const box = document.getElementById("prompt");
        box.value = "Tell me a long story about a dragon.";
        document.getElementById("form").requestSubmit();
    """)
    chat.wait_for("document.querySelector('#messages .assistant:last-of-type').textContent.length > 10", timeout_s=120)
    assert chat.driver.execute_script("return document.getElementById('stop').disabled") is False
    chat.driver.find_element("id", "stop").click()
    chat.wait_for(f"chatPage.answers > {before}", timeout_s=60)
    r = chat.driver.execute_script("""
        return {state: chatPage.state, speed: document.getElementById("speed").textContent,
                errors: document.querySelectorAll("#messages .error").length,
                send: document.getElementById("send").disabled};
    """)
    assert r["state"] == "ready" and r["errors"] == 0 and r["send"] is False
    assert "stopped" in r["speed"]
