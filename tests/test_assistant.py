"""The Assistant facade on fakes: ingest, ask, stream, chat, documents, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag import prompts
from rag.errors import EmptyIndexError, QuestionError, RagError
from rag.llm import ScriptedLLM
from rag.types import Answer, Status, Token

SEED_ANSWER = "Parler a abandonné sa plainte contre Amazon [1]."


def test_ask_answers_with_checked_citation_into_the_seed(make_assistant) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant(ScriptedLLM([SEED_ANSWER]))
    report = assistant.ingest()
    assert report.added == ["000_1d7c1f8b7bb62d9d.txt"] and report.chunks_added >= 3
    answer = assistant.ask("Why did Parler drop its suit?")
    assert not answer.abstained
    assert answer.text.endswith("[1]")
    citation = answer.citations[0]
    assert citation.number == 1
    assert citation.document == {
        "path": "000_1d7c1f8b7bb62d9d.txt",
        "title": citation.title,
        "date": "2021-03",
    }
    assert citation.title.startswith("Le réseau social américain Parler")
    full = assistant.document_text(citation.doc_path)
    assert full[citation.start : citation.end] == citation.text
    assert set(answer.timings) >= {"retrieval_s", "first_token_s", "total_s"}


def test_e5_lets_a_reply_cut_short_finish_before_it_runs(make_assistant) -> None:  # type: ignore[no-untyped-def]
    llm = ScriptedLLM(["NOT_FOUND and more words the server was still writing", SEED_ANSWER])
    assistant = make_assistant(llm)
    assistant.ingest()
    assistant.ask("Who hosts Parler now?")
    assert llm.cuts >= 1
    settled_at_search: list[int] = []
    embed = assistant.embedder._embed  # every embedding run, the question's search first
    assistant.embedder._embed = lambda *a, **kw: settled_at_search.append(llm.settles) or embed(*a, **kw)
    before = llm.settles
    assistant.ask("Why did Parler drop its suit?")
    assert settled_at_search and settled_at_search[0] > before  # settled before e5 first ran


def test_small_set_gives_every_passage_in_document_order(make_assistant) -> None:  # type: ignore[no-untyped-def]
    llm = ScriptedLLM(["NOT_FOUND", "NOT_FOUND"])
    assistant = make_assistant(llm)
    assistant.ingest()
    assistant.ask("Why did Parler drop its suit?")
    assistant.ask("Who hosts Parler now?")
    first, second = llm.calls[0][0]["content"], llm.calls[1][0]["content"]
    assert first == second  # identical system prefix: the server's KV cache is reused
    assert first.count("\n[") == len(assistant.retriever.chunks) + 1  # + the worked example


def test_warm_reads_the_prefix_and_with_passage_excerpts_each_passage_block_in_its_slot(make_assistant) -> None:  # type: ignore[no-untyped-def]
    llm = ScriptedLLM(slots=6)
    assistant = make_assistant(llm, excerpt_style="quotes")
    assistant.ingest()
    assistant.warm()
    assert [(slot, user) for slot, user, _ in llm.held] == [(0, "Hi")] and llm.calls == []
    passage_llm = ScriptedLLM(slots=3)  # fewer slots than passages: slots 1 and 2 only
    passages = make_assistant(passage_llm, excerpt_style="passage")
    passages.warm()
    chunks = passages.retriever.chunks
    assert len(chunks) > 2
    warmed = [user for _, user, _ in passage_llm.held]
    # slots 1 and 2 start from the prefix's state (a server that saves states copies it)
    assert [(slot, after) for slot, _, after in passage_llm.held] == [(0, None), (1, "Hi"), (2, "Hi")]
    assert warmed[0] == "Hi" and all(w.startswith("Key passage from the sources:\n[") for w in warmed[1:])
    assert all(held[0]["content"] == llm.held_messages[0][0]["content"] for held in passage_llm.held_messages)
    # a question goes to the slot of its key passage, whose warmed block is its prefix; checks to slot 0
    for question in ("Epik hébergeur refuge extrême droite", "Parler plainte Amazon abandonnée"):
        passage_llm.enqueue("NOT_FOUND")
        passages.ask(question)
        asked, slot = passage_llm.calls[-1][-1]["content"], passage_llm.slots_used[-1]
        number = int(asked.split("[", 1)[1].split("]", 1)[0])
        assert slot == (number if number < 3 else 0)
        if slot:
            assert asked.startswith(warmed[slot].split("Question: ")[0] + "Question: ")


def test_the_first_question_over_a_small_set_warms_the_prefix_once_per_set_of_documents(
    make_assistant, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import shutil

    docs = tmp_path / "docs"
    shutil.copytree(Path(__file__).resolve().parent.parent / "seeds", docs)
    llm = ScriptedLLM(slots=3)
    assistant = make_assistant(llm)
    assistant.ingest(docs)
    events = list(assistant.stream("Why did Parler drop its suit?"))
    reading = Status("Reading the documents into the model")
    assert reading in events and events.index(reading) < events.index(next(e for e in events if isinstance(e, Answer)))
    assert [slot for slot, _, _ in llm.held] == [0, 1, 2]  # the prefix, then each passage slot
    assert llm.held_messages[0][0] == llm.calls[0][0]  # the answer's prompt starts with the warmed prefix
    assert reading not in list(assistant.stream("Who hosts Parler now?"))  # already warm: not again
    assert len(llm.held) == 3
    (docs / "note.txt").write_text("Parler a aussi perdu son fondateur, écarté par le conseil.", encoding="utf-8")
    assistant.ingest(docs)  # the documents changed: the next question reads the new prefix
    assert reading in list(assistant.stream("Who hosts Parler now?"))
    assert len(llm.held) == 6 and llm.held_messages[3][0] == llm.calls[-1][0] != llm.held_messages[0][0]
    large = ScriptedLLM()
    retrieval = make_assistant(large, full_context_tokens=0)  # a large set: every prompt differs, nothing to warm
    retrieval.ask("Epik hébergeur refuge extrême droite")
    assert large.held == []


def test_large_set_retrieves_top_k(make_assistant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    llm = ScriptedLLM(["NOT_FOUND"])
    assistant = make_assistant(llm, full_context_tokens=0, top_k=2)
    assistant.ingest()
    assistant.ask("Epik hébergeur refuge extrême droite")
    system = llm.calls[0][0]["content"]
    assert "[2]" in system and "\n[3]" not in system
    assert "Epik" in system


TRANSLATE_PROMPT = "Translate this sentence into French."


def translating_llm() -> ScriptedLLM:
    """Translates any question into French words of the seed's Epik passage; finds no answer."""

    def reply(messages: list[dict[str, str]]) -> str:
        if messages[-1]["content"].startswith(TRANSLATE_PROMPT):
            return "Epik hébergeur refuge extrême droite\n(note)"
        return "NOT_FOUND"

    return ScriptedLLM(reply_fn=reply)


def test_a_question_in_another_language_is_also_searched_in_the_documents_one(make_assistant) -> None:  # type: ignore[no-untyped-def]
    question = "Which hosting company took the social network in?"  # English, the seed is French
    llm = translating_llm()
    assistant = make_assistant(llm, full_context_tokens=0, top_k=1, focus_tokens=0)
    assistant.ingest()
    events = list(assistant.stream(question))
    answer = events[-1]
    assert isinstance(answer, Answer)
    assert Status("Translating the question into French") in events
    assert llm.calls[0][-1]["content"].startswith(TRANSLATE_PROMPT) and question in llm.calls[0][-1]["content"]
    assert answer.search_translation == "Epik hébergeur refuge extrême droite"  # its first line
    assert answer.timings["translate_s"] >= 0
    assert "Epik" in llm.calls[1][0]["content"]  # the passage the translation found is the one given
    assert [s.text for s in answer.sources] == [
        h.chunk.text for h in assistant.retriever.search(question, 1, answer.search_translation)
    ]

    without = translating_llm()
    off = make_assistant(without, full_context_tokens=0, top_k=1, focus_tokens=0, translate_query=False)
    off_answer = off.ask(question)
    assert off_answer.search_translation == "" and len(without.calls) == 1  # the answer only
    assert "Epik" not in without.calls[0][0]["content"]  # the question alone finds another passage


@pytest.mark.parametrize(
    ("question", "settings"),
    [
        ("Quel hébergeur a accueilli Parler ?", {"full_context_tokens": 0}),  # already in French
        ("Which hosting company took the social network in?", {}),  # a small set: every passage given
    ],
)
def test_no_translation_when_the_languages_agree_or_the_set_is_small(make_assistant, question, settings) -> None:  # type: ignore[no-untyped-def]
    llm = translating_llm()
    assistant = make_assistant(llm, **settings)
    assistant.ingest()
    answer = assistant.ask(question)
    assert answer.search_translation == ""
    assert not any(call[-1]["content"].startswith(TRANSLATE_PROMPT) for call in llm.calls)


def test_an_unusable_translation_is_not_searched(make_assistant) -> None:  # type: ignore[no-untyped-def]
    echo = ScriptedLLM(reply_fn=lambda m: m[-1]["content"].split("Sentence: ")[-1].split("\n")[0])
    assistant = make_assistant(echo, full_context_tokens=0)
    assistant.ingest()
    assert assistant.search_translation("Which web company took the network in?") == ""  # the question itself
    assert make_assistant(ScriptedLLM([""]), full_context_tokens=0).search_translation("Which company?") == ""


def test_a_failed_translation_leaves_the_search_to_the_question(make_assistant, caplog) -> None:  # type: ignore[no-untyped-def]
    from rag.errors import LLMError

    def reply(messages: list[dict[str, str]]) -> str:
        if messages[-1]["content"].startswith(TRANSLATE_PROMPT):
            raise LLMError("the LLM server timed out")
        return "NOT_FOUND"

    assistant = make_assistant(ScriptedLLM(reply_fn=reply), full_context_tokens=0)
    assistant.ingest()
    answer = assistant.ask("Which hosting company took the social network in?")
    assert answer.search_translation == "" and answer.sources  # searched and answered all the same
    assert "searching without a translation of the question: the LLM server timed out" in caplog.text


def test_large_set_trims_passages_to_the_focus_budget(make_assistant) -> None:  # type: ignore[no-untyped-def]
    from rag.tokens import count_tokens

    def passages(system: str) -> list[str]:
        return re.findall(r"^\[\d+\] (.*)$", system.split("Sources:\n", 2)[-1], re.MULTILINE)

    trimmed, whole = ScriptedLLM(["NOT_FOUND"]), ScriptedLLM(["NOT_FOUND"])
    focused = make_assistant(trimmed, full_context_tokens=0, focus_tokens=80)
    focused.ingest()
    focused.ask("Epik hébergeur refuge extrême droite")
    unfocused = make_assistant(whole, full_context_tokens=0, focus_tokens=0)
    unfocused.ask("Epik hébergeur refuge extrême droite")
    short, full = passages(trimmed.calls[0][0]["content"]), passages(whole.calls[0][0]["content"])
    assert len(full) == 5 and sum(count_tokens(t) for t in full) > 300
    # each kept passage is a contiguous run of the chosen sentences; the first-ranked passage stays
    assert 1 <= len(short) < len(full) and short[0] in full[0]
    assert sum(count_tokens(t) for t in short) < sum(count_tokens(t) for t in full) / 2
    # the default budget (160 tokens) trims too, less tightly
    default_llm = ScriptedLLM(["NOT_FOUND"])
    default = make_assistant(default_llm, full_context_tokens=0)
    default.ask("Epik hébergeur refuge extrême droite")
    middle = passages(default_llm.calls[0][0]["content"])
    assert sum(count_tokens(t) for t in short) <= sum(count_tokens(t) for t in middle) <= 160
    assert middle[0] in full[0]


def test_stream_yields_status_tokens_then_one_answer(make_assistant) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant(ScriptedLLM([SEED_ANSWER]))
    assistant.ingest()
    events = list(assistant.stream("Pourquoi Parler a-t-il abandonné sa plainte ?"))
    assert isinstance(events[0], Status)
    assert any(isinstance(e, Token) for e in events)
    assert [type(e) for e in events].count(Answer) == 1 and isinstance(events[-1], Answer)
    assert events[-1].language == "fr"


def test_unanswerable_abstains_with_shared_phrase(make_assistant) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant(ScriptedLLM(["Parler sought 10 million dollars [1]."]))
    assistant.ingest()
    answer = assistant.ask("How much money did Parler seek in damages?")
    assert answer.abstained and answer.citations == []
    assert answer.text == prompts.CANNOT_ANSWER["en"]


@pytest.mark.parametrize(
    ("question", "language", "name"),
    [("Parler的创始人叫什么名字？", "zh", "Chinese"), ("Как зовут основателя Parler?", "ru", "Russian")],
)
def test_a_question_in_chinese_or_russian_is_answered_in_it(make_assistant, question, language, name) -> None:  # type: ignore[no-untyped-def]
    llm = ScriptedLLM(["NOT_FOUND", "NOT_FOUND"])
    assistant = make_assistant(llm)
    assistant.ingest()
    answer = assistant.ask(question)
    assert f"Answer in {name}, using the sources." in llm.calls[0][-1]["content"]
    assert answer.language == language and answer.abstained
    assert answer.text == prompts.CANNOT_ANSWER[language]


def test_relevance_gate_abstains_without_calling_the_llm(make_assistant) -> None:  # type: ignore[no-untyped-def]
    llm = ScriptedLLM(["Canberra [1]."])
    assistant = make_assistant(llm, min_relevance=0.5)
    assistant.ingest()
    answer = assistant.ask("What is the capital of Australia?")
    assert answer.abstained and "relevant" in answer.abstain_reason
    assert llm.calls == []


def test_chat_rewrites_follow_up_before_answering(make_assistant) -> None:  # type: ignore[no-untyped-def]
    llm = ScriptedLLM(["When did Parler file its suit against Amazon?", "NOT_FOUND"])
    assistant = make_assistant(llm)
    assistant.ingest()
    history = [
        {"role": "user", "content": "Why did Parler drop its suit?"},
        {"role": "assistant", "content": "Because it was back online [2]."},
    ]
    answer = assistant.chat("And when did it file it?", history=history)
    assert "Why did Parler drop its suit?" in llm.calls[0][0]["content"]  # the rewrite prompt saw the history
    assert answer.standalone_question == "When did Parler file its suit against Amazon?"
    assert answer.question == "And when did it file it?"
    assert "When did Parler file its suit" in llm.calls[1][-1]["content"]


@pytest.mark.parametrize("question", ["", "   ", "\x00\x01"])
def test_empty_question_is_refused(make_assistant, question: str) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant()
    assistant.ingest()
    with pytest.raises(QuestionError, match="empty"):
        assistant.ask(question)


def test_too_long_question_is_refused_with_the_limit(make_assistant) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant(max_question_chars=100)
    assistant.ingest()
    with pytest.raises(QuestionError, match="limit is 100"):
        assistant.ask("why " * 100)


def test_empty_index_says_what_to_do(make_assistant) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant()
    with pytest.raises(EmptyIndexError, match="rag ingest"):
        assistant.ask("Why?")


def test_documents_and_describe(make_assistant) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant()
    assistant.ingest()
    docs = assistant.documents()
    assert len(docs) == 1 and docs[0]["date"] == "2021-03" and docs[0]["chunks"] >= 3
    info = assistant.describe()
    assert info["documents"] == "1" and "cached prefix" in info["mode"]


def test_ingest_another_folder_adds_without_removing(make_assistant, fixture_docs_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant()
    assistant.ingest()
    report = assistant.ingest(fixture_docs_dir)
    assert report.added
    paths = {d["path"] for d in assistant.documents()}
    assert "000_1d7c1f8b7bb62d9d.txt" in paths and set(report.added) <= paths


def test_only_indexed_documents_can_be_read(make_assistant) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant()
    assistant.ingest()
    for path in ["../README.md", "/etc/passwd", "missing.txt"]:
        with pytest.raises(RagError, match="not an indexed document"):
            assistant.document_text(path)


def test_a_restart_over_an_unchanged_index_reads_no_chunk_from_chroma(make_assistant, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from rag.store import ChunkStore

    first = make_assistant()
    first.ingest()
    assert first.retriever.version and first.ingest().unchanged == 1  # named once the sync is whole
    reads: list[str] = []

    def counted(name: str):  # type: ignore[no-untyped-def]
        real = getattr(ChunkStore, name)

        def read(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            reads.append(name)
            return real(self, *args, **kwargs)

        return read

    monkeypatch.setattr(ChunkStore, "chunks", counted("chunks"))
    monkeypatch.setattr(ChunkStore, "manifest", counted("manifest"))
    again = make_assistant()  # a restart: the chunks from their copy, what is indexed from them
    report = again.ingest()
    assert report.unchanged == 1 and not report.changed and reads == []
    assert again.retriever.chunks == first.retriever.chunks
    assert again.ask("Why did Parler drop its lawsuit?").sources


def test_syncs_from_two_threads_run_one_after_the_other(make_assistant, fixture_docs_dir: Path) -> None:  # type: ignore[no-untyped-def]
    import threading

    assistant = make_assistant()
    inside = threading.Event()
    release = threading.Event()
    seen: list[tuple[int, int] | None] = []

    def slow(done: int, total: int, name: str) -> None:
        seen.append(assistant.indexing)
        inside.set()
        release.wait(10)

    first = threading.Thread(target=assistant.ingest, kwargs={"progress": slow})
    first.start()
    assert inside.wait(10)
    with pytest.raises(EmptyIndexError, match=r"being indexed \(1 of 1 files read\)"):
        assistant.ask("Why did Parler drop its lawsuit?")
    results = []
    second = threading.Thread(target=lambda: results.append(assistant.ingest(fixture_docs_dir)))
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waits for the first sync instead of failing on the index's lock
    release.set()
    first.join(10)
    second.join(20)
    assert results and results[0].added and seen == [(1, 1)]
    assert assistant.indexing is None
    assert {d["path"] for d in assistant.documents()} >= {"000_1d7c1f8b7bb62d9d.txt"}


def _ingest_while_answering(assistant, folder: Path) -> tuple[bool, bool]:  # type: ignore[no-untyped-def]
    """Open a stream, index `folder` from another thread: (did the indexing embed anything while
    the stream was open, has it finished once the stream is read to the end)."""
    import threading

    ingest_runs: list[str] = []
    embed = assistant.embedder._embed
    assistant.embedder._embed = lambda *a, **kw: ingest_runs.append(threading.current_thread().name) or embed(*a, **kw)
    stream = assistant.stream("Why did Parler drop its suit?")
    assert isinstance(next(stream), Status)  # the question is being answered from here
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(assistant.ingest(folder)), name="indexing")
    worker.start()
    worker.join(0.5)
    embedded_meanwhile = "indexing" in ingest_runs
    events = list(stream)
    worker.join(10)
    assert isinstance(events[-1], Answer) and not events[-1].abstained
    return embedded_meanwhile, bool(results) and not worker.is_alive()


def test_indexing_waits_while_a_question_is_answered(make_assistant, fixture_docs_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant(ScriptedLLM([SEED_ANSWER]))
    assistant.ingest()
    embedded_meanwhile, finished = _ingest_while_answering(assistant, fixture_docs_dir)
    assert not embedded_meanwhile and finished
    assert {d["path"] for d in assistant.documents()} > {"000_1d7c1f8b7bb62d9d.txt"}


def test_indexing_does_not_wait_for_a_remote_llm(make_assistant, fixture_docs_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assistant = make_assistant(ScriptedLLM([SEED_ANSWER]), llm_base_url="http://127.0.0.1:9/v1")
    assistant.ingest()
    embedded_meanwhile, finished = _ingest_while_answering(assistant, fixture_docs_dir)
    assert embedded_meanwhile and finished
