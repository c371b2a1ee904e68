"""Unit tests for rag.retrieve: score fusion and weighted RRF on fixed fakes, dense/BM25 search
over a tmp store, language."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rag.retrieve import (
    DEFAULT_TOKEN_PATTERN,
    RRF_K,
    TOKEN_PATTERN,
    DenseRetriever,
    RankFusionRetriever,
    Retriever,
    ScoreFusionRetriever,
    corpus_language,
)
from rag.store import ChunkStore
from rag.types import Chunk, Hit

# -- RankFusionRetriever with fixed fake rankings --------------------------------------------


class FixedRetriever(BaseRetriever):
    """Returns the same ranking (node ids, best first) for every query; counts its calls."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__()
        self.ids = ids
        self.calls = 0

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        self.calls += 1
        return [NodeWithScore(node=TextNode(id_=i, text=f"text {i}"), score=1.0) for i in self.ids]


def fuse(rankings: dict[str, tuple[list[str], float]], top_k: int = 10) -> tuple[RankFusionRetriever, list]:
    fusion = RankFusionRetriever({n: (FixedRetriever(ids), w) for n, (ids, w) in rankings.items()}, top_k=top_k)
    return fusion, fusion.retrieve("any question")


# -- ScoreFusionRetriever with a fake store and fake BM25 scores -----------------------------


class FakeStore:
    """Dense results and the exact score of any other stored chunk, as ChunkStore gives them."""

    def __init__(self, scores: dict[str, float], returned: int) -> None:
        self.scores = scores
        self.returned = returned  # how many of the best `query` returns
        self.looked_up: list[str] = []

    def query(self, vector, k):  # type: ignore[no-untyped-def]
        best = sorted(self.scores, key=lambda i: -self.scores[i])[: min(k, self.returned)]
        return [
            (Chunk(id=i, doc_path=i, title="", date="", text=i, start=0, end=1, position=0), self.scores[i])
            for i in best
        ]

    def similarities(self, vector, ids):  # type: ignore[no-untyped-def]
        self.looked_up += list(ids)
        return {i: self.scores[i] for i in ids}


class FakeBM25:
    def __init__(self, scores: dict[str, float]) -> None:
        self.ids = list(scores)
        self.position = {cid: i for i, cid in enumerate(self.ids)}
        self.array = np.array([scores[i] for i in self.ids])

    def __call__(self, query: str) -> np.ndarray:
        return self.array


class QueryEmbedderStub:
    def embed_query(self, text: str) -> np.ndarray:
        return np.ones(2)


def score_fuse(dense: dict[str, float], bm25: dict[str, float], returned: int = 3, bm25_weight: float = 0.25):  # type: ignore[no-untyped-def]
    store = FakeStore(dense, returned)
    fusion = ScoreFusionRetriever(store, QueryEmbedderStub(), FakeBM25(bm25), 3, 1.0, bm25_weight, 10)  # type: ignore[arg-type]
    return fusion, store, fusion.retrieve("any question")


def test_score_fusion_keeps_the_margin_that_rank_fusion_throws_away():
    # dense returns a 0.80, b 0.79, c 0.50; BM25 returns d 6, b 5, c 4 (a shares no word)
    dense = {"a": 0.80, "b": 0.79, "c": 0.50, "d": 0.20}
    bm25 = {"a": 0.0, "b": 5.0, "c": 4.0, "d": 6.0}
    fusion, store, results = score_fuse(dense, bm25)
    # min-max over the union: dense a 1, b 0.983, c 0.5, d 0; bm25 a 0, b 0.833, c 0.667, d 1
    # fused = (1.0 * dense + 0.25 * bm25) / 1.25 = 0.8 * dense + 0.2 * bm25
    expected = {"a": 0.8, "b": 0.8 * (0.59 / 0.60) + 0.2 * (5 / 6), "c": 0.8 * 0.5 + 0.2 * (4 / 6), "d": 0.2}
    assert [r.node.node_id for r in results] == ["b", "a", "c", "d"]
    assert [r.score for r in results] == pytest.approx([expected[i] for i in "bacd"])
    # rank fusion with the same weights puts c (two middling ranks) above a (first dense rank)
    _, rrf = fuse({"dense": (["a", "b", "c"], 1.0), "bm25": (["d", "b", "c"], 0.25)})
    assert [r.node.node_id for r in rrf] == ["b", "c", "a", "d"]
    # d, found by BM25 alone, got its exact dense score from the store, not a guess
    assert store.looked_up == ["d"]
    assert fusion.last_ranks == {
        "b": {"dense": 2, "bm25": 2},
        "a": {"dense": 1},
        "c": {"dense": 3, "bm25": 3},
        "d": {"bm25": 1},
    }


def test_score_fusion_without_bm25_weight_is_the_dense_ranking():
    _, store, results = score_fuse({"a": 0.3, "b": 0.9, "c": 0.5}, {"a": 9.0, "b": 0.0, "c": 1.0}, bm25_weight=0.0)
    assert [r.node.node_id for r in results] == ["b", "c", "a"]
    assert store.looked_up == []


def test_score_fusion_ignores_chunks_sharing_no_word_with_the_query():
    # BM25 score 0 is no match: such a chunk is not a BM25 candidate
    _, _, results = score_fuse({"a": 0.9, "b": 0.8, "c": 0.1}, {"a": 0.0, "b": 0.0, "c": 0.0}, returned=2)
    assert [r.node.node_id for r in results] == ["a", "b"]


def test_rrf_constant_is_60():
    assert RRF_K == 60


def test_weighted_rrf_order_and_scores_by_hand():
    fusion, results = fuse({"dense": (["a", "b", "c"], 1.0), "bm25": (["c", "d", "a"], 0.5)})
    expected = {
        "a": 1.0 / 61 + 0.5 / 63,
        "b": 1.0 / 62,
        "c": 1.0 / 63 + 0.5 / 61,
        "d": 0.5 / 62,
    }
    # a 0.024331, c 0.024070, b 0.016129, d 0.008065
    assert [r.node.node_id for r in results] == ["a", "c", "b", "d"]
    for r in results:
        assert r.score == pytest.approx(expected[r.node.node_id])
    assert fusion.last_ranks == {
        "a": {"dense": 1, "bm25": 3},
        "c": {"dense": 3, "bm25": 1},
        "b": {"dense": 2},
        "d": {"bm25": 2},
    }


def test_weights_change_the_winner():
    _, results = fuse({"dense": (["a", "b"], 0.2), "bm25": (["b", "a"], 1.0)})
    assert [r.node.node_id for r in results] == ["b", "a"]
    _, results = fuse({"dense": (["a", "b"], 1.0), "bm25": (["b", "a"], 0.2)})
    assert [r.node.node_id for r in results] == ["a", "b"]


def test_agreement_beats_a_single_first_place():
    # "x" is second in both, "a" and "b" first in one each: 2/62 > 1/61
    _, results = fuse({"one": (["a", "x"], 1.0), "two": (["b", "x"], 1.0)})
    assert results[0].node.node_id == "x"


def test_weight_zero_disables_a_retriever():
    fusion, results = fuse({"dense": (["a", "b"], 1.0), "bm25": (["z", "b", "a"], 0.0)})
    assert [r.node.node_id for r in results] == ["a", "b"]
    assert results[0].score == pytest.approx(1.0 / 61)
    assert fusion._retrievers["bm25"][0].calls == 0
    assert all(set(ranks) == {"dense"} for ranks in fusion.last_ranks.values())


def test_top_k_truncates_and_last_ranks_follow():
    fusion, results = fuse({"dense": (["a", "b", "c", "d"], 1.0)}, top_k=2)
    assert [r.node.node_id for r in results] == ["a", "b"]
    assert set(fusion.last_ranks) == {"a", "b"}


def test_empty_rankings_give_nothing():
    fusion, results = fuse({"dense": ([], 1.0), "bm25": ([], 0.5)})
    assert results == []
    assert fusion.last_ranks == {}


# -- Retriever over a real (tmp) Chroma store with the hash embedder -------------------------

DOCS = {
    "cats.txt": [
        "Cats purr when they are content and sleep most of the afternoon.",
        "A kitten learns hunting by watching its mother stalk mice.",
    ],
    "volcano.txt": [
        "Volcanoes erupt molten lava, ash and sulphur gases from the magma chamber.",
        "Basalt forms when lava cools quickly at the surface.",
    ],
    "bread.txt": [
        "Bakers knead dough so gluten develops before the loaf rises in the oven.",
        "Sourdough starter ferments flour and water with wild yeast.",
    ],
    "trains.txt": [
        "Steam locomotives pulled passenger carriages across the railway network.",
        "Signals and timetables keep trains from colliding on single tracks.",
    ],
}

FRENCH = [
    "Les volcans projettent de la lave et des cendres lors des éruptions.",
    "Le boulanger pétrit la pâte avant de mettre le pain au four.",
    "Les chats dorment souvent pendant l'après-midi près de la fenêtre.",
]


def fill(store: ChunkStore, embedder, docs: dict[str, list[str]], source: str = "/docs") -> None:  # type: ignore[no-untyped-def]
    chunks = [
        Chunk(
            id=f"{path}-{i}",
            doc_path=path,
            title=path,
            date="",
            text=text,
            start=0,
            end=len(text),
            position=i,
            doc_sha256="sha-" + path,
            tokens=len(text.split()),
            source=source,
        )
        for path, texts in docs.items()
        for i, text in enumerate(texts)
    ]
    store.upsert(chunks, embedder.embed_passages([c.text for c in chunks]))


@pytest.fixture
def filled(chunk_store, hash_embedder):  # type: ignore[no-untyped-def]
    fill(chunk_store, hash_embedder, DOCS)
    return chunk_store


QUERY = "why does lava erupt from volcanoes"


@pytest.mark.parametrize(("dense_weight", "bm25_weight"), [(1.0, 0.0), (0.0, 1.0), (1.0, 0.5)])
def test_search_finds_the_chunk_sharing_words(filled, hash_embedder, dense_weight, bm25_weight):
    retriever = Retriever(filled, hash_embedder, dense_weight=dense_weight, bm25_weight=bm25_weight)
    hits = retriever.search(QUERY, 3)
    assert hits[0].chunk.id == "volcano.txt-0"
    assert len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    used = {name for name, w in (("dense", dense_weight), ("bm25", bm25_weight)) if w > 0}
    assert set(hits[0].ranks) == used
    assert all(h.ranks[name] == 1 for h in hits[:1] for name in used)


@pytest.mark.parametrize("fusion", ["score", "rrf"])
def test_both_fusions_find_the_chunk_sharing_words(filled, hash_embedder, fusion):
    hits = Retriever(filled, hash_embedder, fusion=fusion).search(QUERY, 3)
    assert hits[0].chunk.id == "volcano.txt-0" and hits[0].ranks == {"dense": 1, "bm25": 1}


def test_bm25s_corpus_lines_on_the_root_logger_are_dropped(filled, hash_embedder, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        Retriever(filled, hash_embedder, bm25_dir=tmp_path / "bm25")  # saves, then reads the corpus file
        Retriever(filled, hash_embedder, bm25_dir=tmp_path / "bm25")
        logging.info("a line of the application's own")
    assert "mmap objects" not in caplog.text and "a line of the application's own" in caplog.text


def test_bm25s_debug_lines_do_not_reach_a_warning_level_handler(filled, hash_embedder):
    """bm25s sets its logger to DEBUG on import; the CLI's handler (root at WARNING, as
    `logging.basicConfig` leaves it) printed "DEBUG Building index from IDs objects" above answers."""
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        Retriever(filled, hash_embedder).search(QUERY, 3)
    finally:
        root.removeHandler(handler)
    assert not [r.getMessage() for r in seen if r.name.startswith("bm25s") and r.levelno < logging.WARNING]


def test_unknown_fusion_is_refused(filled, hash_embedder):
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        Retriever(filled, hash_embedder, fusion="max")


def test_search_other_topics(filled, hash_embedder):
    retriever = Retriever(filled, hash_embedder)
    assert retriever.search("sourdough starter with wild yeast", 1)[0].chunk.id == "bread.txt-1"
    assert retriever.search("steam locomotives and passenger carriages", 1)[0].chunk.id == "trains.txt-0"


def test_search_returns_project_chunks_with_full_metadata(filled, hash_embedder):
    hit = Retriever(filled, hash_embedder).search(QUERY, 1)[0]
    assert hit.chunk.doc_path == "volcano.txt"
    assert hit.chunk.source == "/docs"
    assert hit.chunk.doc_sha256 == "sha-volcano.txt"


def test_dense_retriever_scores_are_cosines(filled, hash_embedder):
    results = DenseRetriever(filled, hash_embedder, top_k=3).retrieve(QUERY)
    assert results[0].node.node_id == "volcano.txt-0"
    assert all(-1.0 <= (r.score or 0.0) <= 1.0 for r in results)


def test_relevance_on_topic_beats_off_topic(filled, hash_embedder):
    retriever = Retriever(filled, hash_embedder)
    on_topic = retriever.relevance("molten lava from volcanoes")
    off_topic = retriever.relevance("quarterly income statements and taxation")
    assert on_topic > off_topic
    assert -1.0 <= off_topic <= on_topic <= 1.0


def test_empty_store_gives_no_hits_and_zero_relevance(chunk_store, hash_embedder):
    retriever = Retriever(chunk_store, hash_embedder)
    assert retriever.search("anything at all", 5) == []
    assert retriever.relevance("anything at all") == 0.0
    assert retriever.language == "en"
    assert retriever.total_tokens == 0


def test_deleted_document_is_gone_after_refresh(filled, hash_embedder):
    retriever = Retriever(filled, hash_embedder)
    assert retriever.search(QUERY, 1)[0].chunk.doc_path == "volcano.txt"
    filled.delete_document("/docs", "volcano.txt")
    retriever.refresh()
    hits = retriever.search(QUERY, 8)
    assert hits
    assert all(h.chunk.doc_path != "volcano.txt" for h in hits)
    assert all(c.doc_path != "volcano.txt" for c in retriever.chunks)


def test_refresh_picks_up_new_documents(chunk_store, hash_embedder):
    retriever = Retriever(chunk_store, hash_embedder)
    assert retriever.search(QUERY, 1) == []
    fill(chunk_store, hash_embedder, DOCS)
    retriever.refresh()
    assert retriever.search(QUERY, 1)[0].chunk.id == "volcano.txt-0"
    assert retriever.total_tokens == sum(len(t.split()) for texts in DOCS.values() for t in texts)


def test_search_k_larger_than_corpus(filled, hash_embedder):
    hits = Retriever(filled, hash_embedder).search(QUERY, 50)
    assert len(hits) == len({h.chunk.id for h in hits}) == 8


# -- the saved BM25 index ----------------------------------------------------------------------


@pytest.fixture
def bm25_builds(monkeypatch):  # type: ignore[no-untyped-def]
    """Counts the BM25 indexes built (not read back) from now on."""
    import bm25s

    built: list[int] = []
    index = bm25s.BM25.index

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(1)
        return index(self, *args, **kwargs)

    monkeypatch.setattr(bm25s.BM25, "index", counting)
    return built


def saved_indexes(folder):  # type: ignore[no-untyped-def]
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("fusion", ["score", "rrf"])
def test_a_restart_reads_the_saved_bm25_index_back_and_searches_the_same(
    filled, hash_embedder, tmp_path, bm25_builds, fusion
):
    folder = tmp_path / "bm25"
    first = Retriever(filled, hash_embedder, fusion=fusion, bm25_dir=folder)
    assert len(bm25_builds) == 1 and len(saved_indexes(folder)) == 1
    again = Retriever(filled, hash_embedder, fusion=fusion, bm25_dir=folder)
    assert len(bm25_builds) == 1  # read back, not built
    fresh = Retriever(filled, hash_embedder, fusion=fusion)  # built in memory, never saved
    assert len(bm25_builds) == 2
    for query in (QUERY, "sourdough starter with wild yeast", "signals and timetables"):
        expected = [(h.chunk.id, round(h.score, 9), h.ranks) for h in fresh.search(query, 5)]
        assert [(h.chunk.id, round(h.score, 9), h.ranks) for h in first.search(query, 5)] == expected
        assert [(h.chunk.id, round(h.score, 9), h.ranks) for h in again.search(query, 5)] == expected
    assert again.search(QUERY, 1)[0].chunk.id == "volcano.txt-0"


def test_a_changed_chunk_text_builds_a_new_bm25_index(filled, hash_embedder, tmp_path, bm25_builds):
    folder = tmp_path / "bm25"
    retriever = Retriever(filled, hash_embedder, bm25_weight=1.0, dense_weight=0.0, bm25_dir=folder)
    assert retriever.search("geyser", 1) == []
    # the same id and position, another text: an edited document
    fill(filled, hash_embedder, {"bread.txt": ["A geyser spouts boiling water into the air."]})
    retriever.refresh()
    assert len(bm25_builds) == 2 and len(saved_indexes(folder)) == 2
    assert retriever.search("geyser", 1)[0].chunk.id == "bread.txt-0"


def test_a_damaged_saved_bm25_index_is_rebuilt_with_a_warning(filled, hash_embedder, tmp_path, bm25_builds, caplog):
    folder = tmp_path / "bm25"
    Retriever(filled, hash_embedder, bm25_dir=folder)
    (saved,) = saved_indexes(folder)
    (folder / saved / "vocab.index.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="rag.retrieve"):
        retriever = Retriever(filled, hash_embedder, bm25_dir=folder)
    assert "could not be read" in caplog.text and saved in caplog.text
    assert len(bm25_builds) == 2
    assert retriever.search(QUERY, 1)[0].chunk.id == "volcano.txt-0"
    assert saved_indexes(folder) == [saved]  # saved again, whole
    Retriever(filled, hash_embedder, fusion="rrf", bm25_dir=folder).search(QUERY, 3)
    assert len(bm25_builds) == 2


CACHES = [("bm25_dir", "BM25_KEPT"), ("chunks_dir", "CHUNKS_KEPT")]  # Retriever argument, how many kept


@pytest.mark.parametrize(("argument", "kept"), CACHES)
def test_an_unwritable_cache_folder_only_costs_a_rebuild(filled, hash_embedder, tmp_path, caplog, argument, kept):
    filled.settle()  # named contents: the chunks are copied too
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="rag.retrieve"):
        retriever = Retriever(filled, hash_embedder, **{argument: blocked})
    assert "could not be saved" in caplog.text
    assert retriever.search(QUERY, 1)[0].chunk.id == "volcano.txt-0"


@pytest.mark.parametrize(("argument", "kept"), CACHES)
def test_only_the_most_recently_used_are_kept(chunk_store, hash_embedder, tmp_path, argument, kept):
    import rag.retrieve

    folder = tmp_path / "cache"
    for version in range(getattr(rag.retrieve, kept) + 2):
        fill(chunk_store, hash_embedder, {"a.txt": [f"version {version} of the volcano page"]})
        chunk_store.settle()
        Retriever(chunk_store, hash_embedder, **{argument: folder})
    assert len(saved_indexes(folder)) == getattr(rag.retrieve, kept)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file or folder left


# -- the copy of the stored chunks ---------------------------------------------------------------


@pytest.fixture
def store_reads(filled, monkeypatch):  # type: ignore[no-untyped-def]
    """Counts the times the chunks are read from the store from now on (`filled`, named)."""
    filled.settle()
    reads: list[int] = []
    chunks = filled.chunks

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(1)
        return chunks(*args, **kwargs)

    monkeypatch.setattr(filled, "chunks", counting)
    return reads


def test_a_restart_reads_the_chunks_from_their_copy_and_searches_the_same(filled, hash_embedder, tmp_path, store_reads):
    folder = tmp_path / "chunks"
    first = Retriever(filled, hash_embedder, chunks_dir=folder)
    assert len(store_reads) == 1 and len(saved_indexes(folder)) == 1
    again = Retriever(filled, hash_embedder, chunks_dir=folder)
    assert len(store_reads) == 1  # from the copy, not from Chroma
    assert again.chunks == first.chunks
    for query in (QUERY, "sourdough starter with wild yeast"):
        expected = [(h.chunk, round(h.score, 9)) for h in first.search(query, 5)]
        assert [(h.chunk, round(h.score, 9)) for h in again.search(query, 5)] == expected


def test_changed_contents_are_read_from_the_store_again(filled, hash_embedder, tmp_path, store_reads):
    folder = tmp_path / "chunks"
    retriever = Retriever(filled, hash_embedder, chunks_dir=folder)
    fill(filled, hash_embedder, {"bread.txt": ["A geyser spouts boiling water into the air."]})
    assert filled.version() == ""  # written, not yet whole again: nothing is copied or trusted
    retriever.refresh()
    assert len(store_reads) == 2 and len(saved_indexes(folder)) == 1
    assert retriever.search("geyser", 1)[0].chunk.id == "bread.txt-0"
    filled.settle()
    Retriever(filled, hash_embedder, chunks_dir=folder)
    assert len(store_reads) == 3 and len(saved_indexes(folder)) == 2  # the new contents, copied
    assert Retriever(filled, hash_embedder, chunks_dir=folder).search("geyser", 1)[0].chunk.id == "bread.txt-0"
    assert len(store_reads) == 3


def test_a_damaged_copy_of_the_chunks_is_read_from_the_store_with_a_warning(
    filled, hash_embedder, tmp_path, store_reads, caplog
):
    folder = tmp_path / "chunks"
    Retriever(filled, hash_embedder, chunks_dir=folder)
    (saved,) = saved_indexes(folder)
    for damage in ('[["half a row"]]', "[[1, 2"):
        (folder / saved).write_text(damage)
        with caplog.at_level(logging.WARNING, logger="rag.retrieve"):
            retriever = Retriever(filled, hash_embedder, chunks_dir=folder)
        assert "could not be read" in caplog.text and saved in caplog.text
        assert retriever.search(QUERY, 1)[0].chunk.id == "volcano.txt-0"
        assert saved_indexes(folder) == [saved]  # copied again, whole
    assert len(store_reads) == 3


# -- language --------------------------------------------------------------------------------


def _chunks(texts: list[str]) -> list[Chunk]:
    return [
        Chunk(id=str(i), doc_path="x", title="x", date="", text=t, start=0, end=len(t), position=i)
        for i, t in enumerate(texts)
    ]


def test_corpus_language_detects_french():
    assert corpus_language(_chunks(FRENCH)) == "fr"


def test_corpus_language_detects_english():
    assert corpus_language(_chunks([t for texts in DOCS.values() for t in texts])) == "en"


def test_french_corpus_uses_french_bm25(chunk_store, hash_embedder):
    fill(chunk_store, hash_embedder, {f"fr{i}.txt": [t] for i, t in enumerate(FRENCH)})
    retriever = Retriever(chunk_store, hash_embedder, dense_weight=0.0, bm25_weight=1.0)
    assert retriever.language == "fr"
    # "éruption" / "volcan" only match "éruptions" / "volcans" through stemming
    assert retriever.search("une éruption du volcan", 1)[0].chunk.doc_path == "fr0.txt"


RUSSIAN = [
    "Вулканы извергают лаву, когда давление магмы под землёй становится слишком высоким.",
    "Хлеб на закваске поднимается благодаря диким дрожжам и молочнокислым бактериям.",
]


def test_russian_corpus_uses_russian_bm25(chunk_store, hash_embedder):
    fill(chunk_store, hash_embedder, {f"ru{i}.txt": [t] for i, t in enumerate(RUSSIAN)})
    retriever = Retriever(chunk_store, hash_embedder, dense_weight=0.0, bm25_weight=1.0)
    assert retriever.language == "ru"
    # "вулкан" / "лава" only match "Вулканы" / "лаву" through Russian stemming
    assert retriever.search("вулкан и лава", 1)[0].chunk.doc_path == "ru0.txt"


OTHER_SCRIPTS = {
    "ja": ["火山は地下のマグマの圧力が高くなると溶岩を噴き出します。", "パンは野生の酵母と乳酸菌で膨らみます。"],
    "ar": [
        "تقذف البراكين الحمم عندما يرتفع ضغط الصهارة تحت الأرض كثيرا.",
        "يرتفع خبز العجين المخمر بفضل الخميرة البرية والبكتيريا.",
    ],
    "uk": [
        "Вулкани вивергають лаву, коли тиск магми під землею стає надто високим.",
        "Хліб на заквасці піднімається завдяки диким дріжджам і бактеріям.",
    ],
    "pl": [
        "Wulkany wyrzucają lawę, gdy ciśnienie magmy pod ziemią staje się zbyt wysokie.",
        "Chleb na zakwasie rośnie dzięki dzikim drożdżom i bakteriom.",
    ],
}


@pytest.mark.parametrize("language", sorted(OTHER_SCRIPTS))
def test_documents_in_a_language_without_bm25_stop_words_are_searchable(chunk_store, hash_embedder, language):
    # bm25s has no stop-word list for these and raised ValueError when BM25 was built
    texts = OTHER_SCRIPTS[language]
    fill(chunk_store, hash_embedder, {f"{language}{i}.txt": [t] for i, t in enumerate(texts)})
    retriever = Retriever(chunk_store, hash_embedder, dense_weight=0.0, bm25_weight=1.0)
    assert retriever.language == language
    assert retriever.search(texts[0], 1)[0].chunk.doc_path == f"{language}0.txt"


CJK = {
    "zh": (
        ["火山在地下岩浆压力过高时喷出熔岩。", "酸面包依靠野生酵母和乳酸菌发酵。", "公司去年在东京开设了新的办公室。"],
        "熔岩是什么时候喷出的？",  # shares 熔岩 and 喷出 with the first text, no unspaced run
    ),
    "ja": (
        ["火山は地下のマグマの圧力が高くなると溶岩を噴き出します。", "パンは野生の酵母と乳酸菌で膨らみます。"],
        "溶岩を噴き出すのはなぜですか",
    ),
    "ko": (
        ["화산은 지하의 마그마 압력이 높아지면 용암을 분출합니다.", "빵은 야생 효모와 유산균으로 부풀어 오릅니다."],
        "용암이 분출되는 이유",  # Korean attaches particles to words: 용암을 / 용암이
    ),
}


@pytest.mark.parametrize("language", sorted(CJK))
def test_unspaced_cjk_text_is_matched_by_the_words_a_question_shares(chunk_store, hash_embedder, language):
    # With bm25s's default pattern each unspaced run was one token, so BM25 matched nothing
    texts, question = CJK[language]
    fill(chunk_store, hash_embedder, {f"{language}{i}.txt": [t] for i, t in enumerate(texts)})
    retriever = Retriever(chunk_store, hash_embedder, dense_weight=0.0, bm25_weight=1.0)
    hits = retriever.search(question, 1)
    assert hits and hits[0].chunk.doc_path == f"{language}0.txt" and "bm25" in hits[0].ranks


def test_documents_without_cjk_keep_the_faster_default_pattern_and_a_cjk_question_still_matches(
    chunk_store, hash_embedder
):
    fill(chunk_store, hash_embedder, {f"fr{i}.txt": [t] for i, t in enumerate(FRENCH)})
    retriever = Retriever(chunk_store, hash_embedder, dense_weight=0.0, bm25_weight=1.0)
    assert retriever._bm25.token_pattern == DEFAULT_TOKEN_PATTERN
    # the question's Latin word is split from the Chinese around it, as in a CJK corpus
    assert retriever.search("volcans为什么", 1)[0].chunk.doc_path == "fr0.txt"


def test_token_pattern_gives_cjk_bigrams_and_the_default_tokens_elsewhere():
    assert re.findall(TOKEN_PATTERN, "parler为什么撤诉") == ["parler", "为什", "什么", "么撤", "撤诉"]
    assert re.findall(TOKEN_PATTERN, "を a 字 b") == ["を", "字"]  # lone characters stay
    latin = "l'hébergeur epik, le 2 mars 2021 — почему parler_x a été ré-hébergé ?"
    assert re.findall(TOKEN_PATTERN, latin) == re.findall(r"(?u)\b\w\w+\b", latin)


# -- a question with its translation into the documents' language ---------------------------


FRENCH_CHUNK = _chunks(FRENCH[:1])[0]


@pytest.mark.parametrize("fusion", ["score", "rrf"])
def test_the_translation_finds_what_the_question_in_another_language_cannot(chunk_store, hash_embedder, fusion):
    fill(chunk_store, hash_embedder, {f"fr{i}.txt": [t] for i, t in enumerate(FRENCH)})
    retriever = Retriever(chunk_store, hash_embedder, fusion=fusion)
    question = "Why do mountains spit fire and smoke?"  # no word of the French text in it
    if fusion == "score":  # (rank fusion ranks every chunk, even those sharing no word)
        alone = {h.chunk.doc_path: h for h in retriever.search(question, 3)}
        assert "bm25" not in alone.get("fr0.txt", Hit(FRENCH_CHUNK, 0.0)).ranks  # no word to match
    hits = retriever.search(question, 3, translation="Pourquoi les volcans projettent-ils des cendres ?")
    assert hits[0].chunk.doc_path == "fr0.txt" and hits[0].ranks == {"dense": 1, "bm25": 1}


def test_the_query_vector_adds_the_translations_at_half_weight(hash_embedder):
    from rag.retrieve import TRANSLATION_WEIGHT, bundle_of, query_vector

    question, translation = "volcano ash", "cendres du volcan"
    bundle = bundle_of(question, translation)
    assert bundle.query_str == "volcano ash\ncendres du volcan"  # what BM25 reads
    expected = hash_embedder.embed_query(question) + TRANSLATION_WEIGHT * hash_embedder.embed_query(translation)
    assert TRANSLATION_WEIGHT == 0.5
    np.testing.assert_allclose(query_vector(hash_embedder, bundle), expected)
    plain = bundle_of(question)
    assert plain.query_str == question and not plain.custom_embedding_strs
    np.testing.assert_allclose(query_vector(hash_embedder, plain), hash_embedder.embed_query(question))


# -- window vectors (multi-granularity) ------------------------------------------------------


def _sync(tmp_path, store, embedder, window_tokens):  # type: ignore[no-untyped-def]
    from rag.ingest import sync_folder

    folder = tmp_path / f"docs{window_tokens}"
    folder.mkdir()
    # the question's two topics sit in neighbouring sentences of one file, and one of them
    # alone in another file: only the windowed vector of "Permits ..." knows about volcanoes
    (folder / "volcano.txt").write_text("Volcanoes erupt lava near villages.\nPermits expire yearly.", encoding="utf-8")
    (folder / "fishing.txt").write_text("Fishing licences differ.\nPermits expire monthly.", encoding="utf-8")
    sync_folder(folder, store, embedder, chunk_tokens=8, window_tokens=window_tokens)
    return Retriever(store, embedder, dense_weight=1.0, bm25_weight=0.0)


def test_a_chunk_is_found_through_the_window_it_belongs_to(tmp_path, make_chunk_store, hash_embedder):
    from rag.store import index_name

    query = "When do volcano permits expire?"
    plain = _sync(tmp_path, make_chunk_store("plain", embedder_name=hash_embedder.name), hash_embedder, 0)
    windowed_store = make_chunk_store("windowed", embedder_name=index_name(hash_embedder.name, 16))
    windowed = _sync(tmp_path, windowed_store, hash_embedder, 16)
    permits = [h.chunk for h in windowed.search(query, 4) if h.chunk.text.startswith("Permits")]
    assert permits[0].doc_path == "volcano.txt"  # the volcano file's permits rank first

    def permit_scores(retriever: Retriever) -> dict[str, float]:
        found = retriever.store.query(hash_embedder.embed_query(query), 4)
        return {c.doc_path: s for c, s in found if c.text.startswith("Permits")}

    plain_scores, windowed_scores = permit_scores(plain), permit_scores(windowed)
    # without windows the two "Permits" chunks are nearly tied; the window lifts the volcano one
    assert windowed_scores["volcano.txt"] > windowed_scores["fishing.txt"]
    gap = windowed_scores["volcano.txt"] - windowed_scores["fishing.txt"]
    assert gap > plain_scores["volcano.txt"] - plain_scores["fishing.txt"]
