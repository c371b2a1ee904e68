"""The public API is what `rag/__init__.py` exports; this pins it."""

import rag


def test_exported_members() -> None:
    assert sorted(rag.__all__) == [
        "Answer",
        "Assistant",
        "Citation",
        "IngestReport",
        "RagError",
        "Settings",
        "Status",
        "Token",
    ]
    for name in rag.__all__:
        assert getattr(rag, name) is not None


def test_answer_and_citation_keep_their_documented_names() -> None:
    fields = rag.Answer.__dataclass_fields__
    assert {"text", "citations", "abstained", "timings"} <= set(fields)
    assert {"number", "text", "doc_path", "title", "date", "start", "end"} <= set(rag.Citation.__dataclass_fields__)
    for method in ("ask", "stream", "chat", "ingest"):
        assert callable(getattr(rag.Assistant, method))
