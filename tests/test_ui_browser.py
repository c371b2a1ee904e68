"""End-to-end tests of the chat UI in a real browser (Playwright driving Debian's Chromium).

The app runs in-process on a free 127.0.0.1 port. Most tests use a real `Assistant` on
fakes (HashEmbedder + ScriptedLLM), so they are fast and deterministic; one test uses the
real embedded models and takes a screenshot (docs/screenshot.png on request).

Needs /usr/bin/chromium (`apt-get install -y chromium`; `.ci/run` does it). `playwright
install` is not used: it downloads browsers, and the machine is offline.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent
SEED_DIR = ROOT / "seeds"
# The README image is refreshed only on request (RAG_SCREENSHOT=docs/screenshot.png make test),
# so that a test run leaves the working tree as it found it.
SCREENSHOT_ENV = "RAG_SCREENSHOT"
SEED_QUESTION = "Why did Parler drop its suit?"
SEED_ANSWER = "Parler a abandonné sa plainte contre Amazon [1]."
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT_MS = 30_000

if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
    pytest.skip("Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scripted_reply(messages: list[dict[str, str]]) -> str:
    """The fake model: answers the seed question and the uploaded document's question."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if messages[0]["role"] != "system":  # a follow-up rewrite: keep the question as it is
        found = re.findall(r"^User: (.*)$", user, re.MULTILINE)
        return found[-1] if found else "NOT_FOUND"
    if "Zephyr" in user:
        numbers = re.findall(r"^\[(\d+)\] .*Quillon", system, re.MULTILINE)
        return f"The Zephyr mascot is a purple otter named Quillon [{numbers[-1]}]." if numbers else "NOT_FOUND"
    if "Parler" in user:
        return SEED_ANSWER
    return "NOT_FOUND"


def start_app(assistant: Any, on_change: Any = None, **settings_update: Any) -> tuple[Any, str]:
    from rag import ui

    app = ui.create_app(assistant, on_change)
    port = free_port()
    settings = assistant.settings.model_copy(update={"ui_host": "127.0.0.1", "ui_port": port, **settings_update})
    ui.launch(app, settings, prevent_thread_lock=True, quiet=True)
    return app, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def fake_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """A real Assistant on fakes (as tests/conftest.py `make_assistant`), served on a free port."""
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.embeddings import HashEmbedder
    from rag.llm import ScriptedLLM
    from rag.warmup import Warmer

    root = tmp_path_factory.mktemp("ui")
    settings = Settings(index_dir=root / "index", data_dir=root / "data", docs_dir=SEED_DIR)
    assistant = Assistant(settings, llm=ScriptedLLM(reply_fn=scripted_reply), embedder=HashEmbedder())
    assistant.ingest()
    app, url = start_app(assistant, Warmer(assistant.warm).request)  # as app.py
    yield assistant, url
    app.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records every request; after the test, all must have gone to localhost."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.requested = requested
    yield page
    context.close()
    remote = remote_requests(requested)
    assert remote == [], f"the page fetched from the network: {remote}"


def remote_requests(urls: list[str]) -> list[str]:
    """Requests that left the machine (anything but localhost, data: and blob: URLs)."""
    local = [u for u in urls if u.startswith(("data:", "blob:")) or urllib.parse.urlsplit(u).hostname in LOCAL_HOSTS]
    return [u for u in urls if u not in local]


def open_app(page: Any, url: str) -> None:
    page.goto(url)
    page.locator("#question textarea").wait_for()


def ask(page: Any, question: str, timeout_ms: int = TIMEOUT_MS) -> Any:
    """Type a question, send it and wait for the final answer (its small-print timings)."""
    done = page.locator("#chat small.small-print")
    before = done.count()
    page.locator("#question textarea").fill(question)
    page.locator("#send").click()
    sync_api.expect(done).to_have_count(before + 1, timeout=timeout_ms)
    return last_bot_message(page)


def last_bot_message(page: Any) -> Any:
    return page.locator("#chat [data-testid='bot']").last


def test_seed_question_streams_an_answer_with_linked_evidence(fake_app: tuple[Any, str], page: Any) -> None:
    _, url = fake_app
    open_app(page, url)
    ask(page, SEED_QUESTION)
    message = last_bot_message(page)
    assert "Parler a abandonné sa plainte contre Amazon" in message.inner_text()
    marker = message.locator("a.cite", has_text="[1]")
    assert marker.count() == 1
    assert marker.get_attribute("href") == "#ev-1-1"
    assert "Parler" in (marker.get_attribute("title") or "")  # hover shows the passage
    # the evidence panel: title, date, and the cited span highlighted inside its context
    item = page.locator("#evidence #ev-1-1")
    item.wait_for()
    assert "2021-03" in item.inner_text()
    highlighted = item.locator(".ev-passage mark")
    assert "abandonné la plainte" in highlighted.inner_text()
    # clicking the marker brings the evidence into view and flashes it
    marker.click()
    page.wait_for_function("document.getElementById('ev-1-1').classList.contains('flash')")
    # the whole document, opened at the cited place
    item.locator("details.ev-doc > summary").click()
    assert "Epik" in item.locator(".ev-full").inner_text()
    # timings and the model in small print
    small = message.locator("small.small-print").inner_text()
    assert "total" in small and " via " in small and "embedder test/hash-embedder" in small


def test_upload_then_ask_what_only_it_says(fake_app: tuple[Any, str], page: Any, tmp_path: Path) -> None:
    assistant, url = fake_app
    doc = tmp_path / "zephyr notes.txt"
    doc.write_text("The Zephyr project has a mascot. The Zephyr mascot is a purple otter named Quillon.\n")
    open_app(page, url)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#upload input[type=file]").set_input_files(str(doc))
    page.locator("#upload-status", has_text="Added and indexed").wait_for()
    assert "zephyr notes.txt" in page.locator("#documents").inner_text()
    # the documents changed: the fixed prefix is read again in the background, with the new one
    wait_until(lambda: any("Quillon" in system for system in warmed_prefixes(assistant)))
    assert (assistant.settings.data_dir / "uploads" / "zephyr notes.txt").is_file()
    page.get_by_role("tab", name="Chat").click()
    ask(page, "What is the Zephyr mascot?")
    message = last_bot_message(page)
    assert "purple otter named Quillon" in message.inner_text()
    evidence = page.locator("#evidence .ev-item").first
    assert "zephyr notes.txt" in evidence.inner_text()
    assert "Quillon" in evidence.locator("mark").first.inner_text()

    # a rejected file says why; removal takes the document out of the index
    bad = tmp_path / "notes.exe"
    bad.write_bytes(b"MZ\x00\x00")
    page.get_by_role("tab", name="Documents").click()
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    page.get_by_text("Invalid file type").first.wait_for()  # Gradio's own server-side type check
    assert not (assistant.settings.data_dir / "uploads" / "notes.exe").exists()
    page.locator("#remove-choice input").click()
    page.get_by_role("option", name="zephyr notes.txt").click()
    page.locator("#remove").click()
    page.locator("#upload-status", has_text="Removed").wait_for()
    assert "zephyr notes.txt" not in page.locator("#documents").inner_text()
    assert all(d["path"] != "zephyr notes.txt" for d in assistant.documents())
    wait_until(lambda: "Quillon" not in warmed_prefixes(assistant)[-1])  # and again without it


def test_a_question_is_answered_while_an_upload_is_indexed(
    fake_app: tuple[Any, str], page: Any, tmp_path: Path
) -> None:
    import threading

    from rag import ui

    assistant, url = fake_app
    embedding_it, release = threading.Event(), threading.Event()
    embed = assistant.embedder._embed

    def slow(texts: Any, is_query: bool) -> Any:  # the upload's passages wait until the question is answered
        if any("Borealis" in t for t in texts):
            embedding_it.set()
            release.wait(30)
        return embed(texts, is_query)

    assistant.embedder._embed = slow
    try:
        doc = tmp_path / "borealis notes.txt"
        doc.write_text("The Borealis station keeps a logbook. Its mascot is a blue heron named Pell.\n")
        open_app(page, url)
        page.get_by_role("tab", name="Documents").click()
        page.locator("#upload input[type=file]").set_input_files(str(doc))
        assert embedding_it.wait(20)  # the upload is being indexed
        page.get_by_role("tab", name="Chat").click()
        message = ask(page, SEED_QUESTION)
        assert "Parler a abandonné sa plainte contre Amazon" in message.inner_text()
        assert assistant.indexing is not None  # answered before the upload's indexing ended
        release.set()
        page.get_by_role("tab", name="Documents").click()
        page.locator("#upload-status", has_text="Added and indexed").wait_for()
    finally:
        release.set()
        assistant.embedder._embed = embed
        uploads = assistant.settings.data_dir / "uploads"
        if "borealis notes.txt" in ui.uploaded_documents(assistant, uploads):
            ui.remove_upload(assistant, uploads, "borealis notes.txt")


def warmed_prefixes(assistant: Any) -> list[str]:
    """The system messages of the fake LLM's warm-ups (`Assistant.warm` reads the prefix with "Hi")."""
    return [held[0]["content"] for held in list(assistant.llm.held_messages) if held[-1]["content"] == "Hi"]


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_thumbs_up_writes_a_feedback_line(fake_app: tuple[Any, str], page: Any) -> None:
    assistant, url = fake_app
    feedback = assistant.settings.data_dir / "feedback.jsonl"
    before = feedback.read_text().splitlines() if feedback.exists() else []
    open_app(page, url)
    ask(page, SEED_QUESTION)
    last_bot_message(page).hover()
    page.locator("#chat button[aria-label='Like']").last.click()
    page.locator("#feedback-note", has_text="saved").wait_for()
    lines = feedback.read_text().splitlines()
    assert len(lines) == len(before) + 1
    entry = json.loads(lines[-1])
    assert entry["rating"] == "up"
    assert entry["question"] == SEED_QUESTION
    assert entry["answer"].startswith("Parler a abandonné sa plainte contre Amazon") and "[1]" in entry["answer"]
    assert entry["citations"][0]["number"] == 1 and entry["citations"][0]["document"]["date"] == "2021-03"
    assert set(entry) == {"time", "question", "answer", "citations", "rating"}
    assert "index" not in str(feedback.relative_to(assistant.settings.data_dir))


def test_hostile_document_renders_inert(fake_app: tuple[Any, str], page: Any, tmp_path: Path) -> None:
    _, url = fake_app
    doc = tmp_path / "zephyr-evil.md"
    doc.write_text(
        "The Zephyr mascot is a purple otter named Quillon. <script>window.__pwned = 1</script> "
        "<img src=x onerror='window.__pwned = 2'> ![tracker](http://evil.example/x.png)\n"
    )
    open_app(page, url)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#upload input[type=file]").set_input_files(str(doc))
    page.locator("#upload-status", has_text="Added and indexed").wait_for()
    page.get_by_role("tab", name="Chat").click()
    ask(page, "What is the Zephyr mascot?")
    text = page.locator("#evidence").inner_text()
    assert "<script>window.__pwned = 1</script>" in text  # shown as text, not run
    assert "![tracker](http://evil.example/x.png)" in text
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#evidence script, #evidence img, #chat img").count() == 0
    assert not any("evil.example" in u for u in page.requested)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#remove-choice input").click()
    page.get_by_role("option", name="zephyr-evil.md").click()
    page.locator("#remove").click()
    page.locator("#upload-status", has_text="Removed").wait_for()


def test_no_route_serves_files_outside_the_app(fake_app: tuple[Any, str]) -> None:
    _, url = fake_app
    seed = next(SEED_DIR.iterdir())
    for target in ("/etc/passwd", "../../../../etc/passwd", str(seed), "../seeds/" + seed.name):
        for route in ("/gradio_api/file=", "/file="):
            request = urllib.request.Request(url + route + urllib.parse.quote(target, safe="/"))
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    body = response.read()
            except urllib.error.HTTPError as error:
                assert error.code in (403, 404), (target, error.code)
                continue
            assert b"root:" not in body and b"Parler" not in body, target


def test_login_required_when_configured(fake_app: tuple[Any, str], page: Any) -> None:
    assistant, _ = fake_app
    app, url = start_app(assistant, ui_auth="reader:s3cret pass")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/config", timeout=10)
        assert refused.value.code == 401
        page.goto(url)
        page.get_by_label("username").fill("reader")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("Incorrect", exact=False).first.wait_for()
        page.get_by_label("username").fill("reader")  # the form is cleared after a failure
        page.get_by_label("password").fill("s3cret pass")
        page.get_by_role("button", name="Login").click()
        page.locator("#question textarea").wait_for()
    finally:
        app.close()


def test_real_models_answer_with_evidence_upload_and_feedback(browser: Any, tmp_path: Path) -> None:
    """The real e5 embedder and bundled LLM through the browser: the seed question with its
    [n] marker and highlighted evidence (a screenshot: see SCREENSHOT_ENV), then an uploaded
    document answering a question only it can answer, then a thumbs-up written to JSONL."""
    from rag.assistant import Assistant
    from rag.config import Settings

    assistant = Assistant(Settings(index_dir=tmp_path / "index", data_dir=tmp_path / "data", docs_dir=SEED_DIR))
    assistant.ingest()
    app, url = start_app(assistant)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(url)
        page.locator("#question textarea").wait_for(timeout=TIMEOUT_MS)
        started = time.perf_counter()
        ask(page, SEED_QUESTION, timeout_ms=600_000)
        print(f"real answer in {time.perf_counter() - started:.1f} s")
        message = last_bot_message(page)
        assert "do not say" not in message.inner_text()
        assert message.locator("a.cite").count() >= 1
        assert page.locator("#evidence .ev-item mark").count() >= 1
        screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "screenshot.png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000

        doc = tmp_path / "zephyr.txt"
        doc.write_text("The Zephyr project has a mascot. The Zephyr mascot is a purple otter named Quillon.\n")
        page.get_by_role("tab", name="Documents").click()
        page.locator("#upload input[type=file]").set_input_files(str(doc))
        page.locator("#upload-status", has_text="Added and indexed").wait_for(timeout=120_000)
        page.get_by_role("tab", name="Chat").click()
        ask(page, "What animal is the Zephyr mascot?", timeout_ms=600_000)
        message = last_bot_message(page)
        assert "otter" in message.inner_text().lower()
        assert "zephyr.txt" in page.locator("#evidence .ev-item").first.inner_text()

        message.hover()
        page.locator("#chat button[aria-label='Like']").last.click()
        page.locator("#feedback-note", has_text="saved").wait_for()
        entry = json.loads((tmp_path / "data" / "feedback.jsonl").read_text().splitlines()[-1])
        assert entry["rating"] == "up" and "otter" in entry["answer"].lower()
    finally:
        context.close()
        app.close()
    remote = remote_requests(requested)
    assert remote == []
