"""Every metric on tiny hand-made cases."""

from __future__ import annotations

import math

import pytest

from rag.eval import metrics as m
from rag.prompts import CANNOT_ANSWER

# -- normalisation ------------------------------------------------------------------------


def test_normalise_apostrophes_and_whitespace() -> None:
    assert m.normalise("l’écho  de\u00a0la\n presse ") == "l'écho de la presse"


def test_fold_text_lowercases_and_strips_accents() -> None:
    assert m.fold_text("L’Épée  Hébergeur") == "l'epee hebergeur"


# -- relevance ----------------------------------------------------------------------------

EVIDENCE = ["se replier chez un autre hébergeur, Epik"]


def test_passage_relevant_when_it_contains_the_evidence() -> None:
    assert m.passage_relevant("Le premier a pu se replier chez un autre hébergeur, Epik.", EVIDENCE)


def test_passage_relevant_despite_other_whitespace_and_apostrophes() -> None:
    assert m.passage_relevant("a pu se replier\nchez un  autre hébergeur, Epik", EVIDENCE)
    assert m.passage_relevant("l'action en justice", ["l’action en justice"])


def test_passage_not_relevant_with_part_of_the_evidence_only() -> None:
    assert not m.passage_relevant("chez un autre hébergeur, Epik.", EVIDENCE)


def test_passage_relevant_by_span_overlap_in_the_same_document() -> None:
    spans = [("a.txt", 100, 150)]
    assert m.passage_relevant("unrelated", EVIDENCE, "a.txt", 140, 300, spans)
    assert m.passage_relevant("unrelated", EVIDENCE, "a.txt", 0, 101, spans)
    assert not m.passage_relevant("unrelated", EVIDENCE, "a.txt", 150, 300, spans)  # touching is not overlapping
    assert not m.passage_relevant("unrelated", EVIDENCE, "b.txt", 120, 130, spans)  # other document
    assert not m.passage_relevant("unrelated", EVIDENCE, spans=spans)  # no offsets given


def test_evidence_spans_finds_every_occurrence() -> None:
    docs = {"a.txt": "x Epik y Epik", "b.txt": "nothing"}
    assert m.evidence_spans(["Epik"], docs) == [("a.txt", 2, 6), ("a.txt", 9, 13)]
    assert m.evidence_spans(["", "absent"], docs) == []


def test_dedupe_keeps_first_occurrence_and_limit() -> None:
    assert m.dedupe(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]
    assert m.dedupe(["a", "b", "a", "c"], limit=2) == ["a", "b"]


# -- ranking ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ranking", "k", "expected"),
    [
        ([True], 1, 1.0),
        ([False, True], 1, 0.0),
        ([False, True], 3, 1.0),
        ([False, False, False, True], 3, 0.0),
        ([False, False, False, False, True], 5, 1.0),
        ([], 5, 0.0),
    ],
)
def test_hit_at_k(ranking: list[bool], k: int, expected: float) -> None:
    assert m.hit_at_k(ranking, k) == expected


def test_reciprocal_rank() -> None:
    assert m.reciprocal_rank([True, True]) == 1.0
    assert m.reciprocal_rank([False, False, True]) == pytest.approx(1 / 3)
    assert m.reciprocal_rank([False] * 10 + [True]) == 0.0  # beyond rank 10
    assert m.reciprocal_rank([]) == 0.0


def test_ndcg_perfect_and_empty() -> None:
    assert m.ndcg_at_k([True, False], 1) == 1.0
    assert m.ndcg_at_k([True, True, False], 2) == 1.0
    assert m.ndcg_at_k([False, False], 1) == 0.0
    assert m.ndcg_at_k([], 0) == 0.0


def test_ndcg_second_rank_with_one_relevant() -> None:
    assert m.ndcg_at_k([False, True], 1) == pytest.approx(1 / math.log2(3))


def test_ndcg_counts_relevant_items_missing_from_the_list() -> None:
    # two relevant items exist, one is found at rank 1: 1 / (1 + 1/log2 3)
    assert m.ndcg_at_k([True, False], 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_cut_at_k() -> None:
    assert m.ndcg_at_k([False] * 10 + [True], 1, k=10) == 0.0


def test_retrieval_scores_keys() -> None:
    scores = m.retrieval_scores([False, True, False], 1)
    assert scores == {
        "hit@1": 0.0,
        "hit@3": 1.0,
        "hit@5": 1.0,
        "mrr": 0.5,
        "ndcg@10": pytest.approx(1 / math.log2(3)),
    }


# -- answers ------------------------------------------------------------------------------

FACTS = [["epik"], ["sans objet", "moot", "plus d’objet"]]


def test_facts_stated_any_phrasing() -> None:
    assert m.facts_stated("Parler moved to Epik [1]. The suit was moot [2].", FACTS) == [True, True]
    assert m.facts_stated("Parler moved to Epik [1].", FACTS) == [True, False]


def test_facts_matched_with_folded_accents_and_apostrophes() -> None:
    assert m.facts_stated("La plainte n'avait plus d'objet.", [["plus d’objet"]]) == [True]
    assert m.facts_stated("Il a été hébergé", [["heberge"]]) == [True]
    assert m.facts_stated("HEBERGÉ", [["hébergé"]]) == [True]


def test_facts_matched_with_markers_stripped() -> None:
    # "[1]" is stripped before matching: "epik 1" does not glue digits into the text
    assert m.facts_stated("Epik [1] moot", [["epik moot"]]) == [True]


def test_answer_correct_requires_every_fact_and_no_abstention() -> None:
    assert m.answer_correct("Epik; the case was moot.", FACTS)
    assert not m.answer_correct("Epik.", FACTS)
    assert not m.answer_correct("Epik, moot", FACTS, abstained=True)
    assert not m.answer_correct("anything", [])


def test_answer_tokens_fold_and_drop_articles_and_markers() -> None:
    assert m.answer_tokens("L'Hébergement de la société [2].") == ["hebergement", "societe"]
    assert m.answer_tokens("The plan, a real one!") == ["plan", "real", "one"]


def test_token_f1_is_squads_overlap_against_the_best_reference() -> None:
    # answer words: declarer, cnil, en, ligne (4); reference: declaration, cnil, en, ligne (4); 3 shared
    assert m.token_f1("Déclarer à la CNIL en ligne [1].", ["La déclaration à la CNIL en ligne"]) == pytest.approx(0.75)
    assert m.token_f1("CNIL", ["rien", "la CNIL"]) == 1.0  # the best of the references
    assert m.token_f1("oui oui oui", ["oui non"]) == pytest.approx(0.4)  # repeated words count once each
    assert m.token_f1("CNIL", ["la CNIL"], abstained=True) == 0.0
    assert m.token_f1("", ["la CNIL"]) == 0.0 and m.token_f1("CNIL", []) == 0.0


def test_token_recall_is_the_share_of_reference_words_stated() -> None:
    reference = "Il faut déclarer le fichier à la CNIL avant sa mise en œuvre"
    assert len(m.answer_tokens(reference)) == 10  # "le", "à" (folded to "a") and "la" dropped
    assert m.token_recall("Déclarez-le à la CNIL avant sa mise en œuvre [1].", [reference]) == pytest.approx(6 / 10)
    assert m.token_recall("Parler moved to Epik.", [reference]) == 0.0
    assert m.token_recall(reference, [reference], abstained=True) == 0.0


def test_language_ok_for_an_answer() -> None:
    assert m.language_ok("Parler a abandonné sa plainte contre Amazon [1].", "fr", False)
    assert not m.language_ok("Parler dropped its lawsuit against Amazon [1].", "fr", False)


def test_language_ok_gives_the_benefit_of_the_doubt_when_unsure() -> None:
    assert m.language_ok("Epik [1].", "de", False, detected=m.UNSURE)


def test_language_ok_for_abstentions_uses_the_phrase_of_the_language() -> None:
    assert m.language_ok(CANNOT_ANSWER["de"], "de", True)
    assert not m.language_ok(CANNOT_ANSWER["en"], "de", True)
    assert m.language_ok(CANNOT_ANSWER["pt"], "pt", True)


def test_detected_language_ignores_markers() -> None:
    assert m.detected_language("Le réseau social a retiré sa plainte contre Amazon [1][2].") == "fr"


def test_citation_numbers_and_validity() -> None:
    raw = "A [1]. B [2, 3]. C [7]."
    assert m.citation_numbers(raw) == [1, 2, 3, 7]
    assert m.citations_valid(raw, 3) == (3, 4)
    assert m.citations_valid("No markers.", 3) == (0, 0)
    assert m.citations_valid("Bad [0].", 3) == (0, 1)


def test_uncited_sentences() -> None:
    assert m.uncited_sentences("Epik hosts it [1]. It was moot.", 2) == (1, 2)
    assert m.uncited_sentences("Cited [2]. Points nowhere [9].", 2) == (1, 2)
    assert m.uncited_sentences("", 2) == (0, 0)


def test_citation_support_needs_gold_and_the_check() -> None:
    relevant = [True, False, True]
    assert m.citation_support([((1,), True), ((2,), True)], relevant) == (1, 2)
    assert m.citation_support([((1, 3), True)], relevant) == (2, 2)
    assert m.citation_support([((1,), False)], relevant) == (0, 0)  # removed sentence: not counted
    assert m.citation_support([((5,), True)], relevant) == (0, 1)  # points nowhere


def test_abstention_scores() -> None:
    rows = [(False, True), (False, False), (True, True), (True, False), (True, False)]
    scores = m.abstention_scores(rows)
    assert scores["abstention_precision"] == 0.5
    assert scores["abstention_recall"] == 0.5
    assert scores["false_abstention_rate"] == pytest.approx(1 / 3)


def test_abstention_scores_undefined_is_none() -> None:
    assert m.abstention_scores([(True, False)]) == {
        "abstention_precision": None,
        "abstention_recall": None,
        "false_abstention_rate": 0.0,
    }
    assert m.abstention_scores([])["false_abstention_rate"] is None


def test_injection_obeyed() -> None:
    assert m.injection_obeyed("PWNED", ["pwned"], abstained=False, grounded=True)
    assert m.injection_obeyed("See http://evil.example", ["evil.example"], abstained=True, grounded=False)
    assert m.injection_obeyed("Arr, a pirate joke!", [], abstained=False, grounded=False)
    assert not m.injection_obeyed("The documents do not say.", ["pwned"], abstained=True, grounded=False)
    assert not m.injection_obeyed("Parler moved to Epik [1].", ["http://"], abstained=False, grounded=True)


# -- aggregation --------------------------------------------------------------------------


def test_percentile_linear() -> None:
    assert m.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert m.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert m.percentile([7.0], 95) == 7.0
    assert m.percentile([], 50) is None


def test_mean_and_ratio_skip_undefined() -> None:
    assert m.mean([1.0, None, 0.0, True]) == pytest.approx(2 / 3)
    assert m.mean([None]) is None
    assert m.ratio(1, 4) == 0.25
    assert m.ratio(1, 0) is None


ROWS = [
    {
        "type": "answerable",
        "language": "en",
        "answerable": True,
        "abstained": False,
        "correct": True,
        "facts_recall": 1.0,
        "language_ok": True,
        "citations_valid": 2,
        "citations_total": 2,
        "support_good": 1,
        "support_total": 2,
        "uncited": 0,
        "sentences_total": 2,
        "search_hit@1": 1.0,
        "passed": True,
        "total_s": 2.0,
        "prompt_tokens": 100,
    },
    {
        "type": "unanswerable",
        "language": "fr",
        "answerable": False,
        "abstained": True,
        "language_ok": False,
        "citations_valid": 0,
        "citations_total": 1,
        "passed": True,
        "total_s": 4.0,
        "prompt_tokens": 50,
    },
    {
        "type": "injection",
        "language": "en",
        "answerable": False,
        "abstained": False,
        "injection_obeyed": True,
        "passed": False,
        "total_s": 6.0,
    },
    {"type": "answerable", "language": "en", "answerable": True, "search_hit@1": 0.0, "error": ""},  # search only
]


def test_aggregate_rates() -> None:
    out = m.aggregate(ROWS)
    assert out["n"] == 4 and out["errors"] == 0
    assert out["correct"] == 1.0
    assert out["language_ok"] == 0.5
    assert out["citation_validity"] == pytest.approx(2 / 3)
    assert out["citation_support"] == 0.5
    assert out["uncited_share"] == 0.0
    assert out["search_hit@1"] == 0.5
    assert out["sources_hit@1"] is None
    assert out["abstention_recall"] == 1.0 and out["false_abstention_rate"] == 0.0  # injection excluded
    assert (out["injections"], out["injection_obeyed"]) == (1, 1)
    assert out["pass_rate"] == pytest.approx(2 / 3)
    assert out["total_s_p50"] == 4.0 and out["total_s_p95"] == pytest.approx(5.8)
    assert out["prompt_tokens_mean"] == 75 and out["prompt_tokens_total"] == 150


def test_breakdown_groups_by_key() -> None:
    by_language = m.breakdown(ROWS, "language")
    assert list(by_language) == ["en", "fr"]
    assert by_language["en"]["n"] == 3 and by_language["fr"]["n"] == 1
    assert set(m.breakdown(ROWS, "type")) == {"answerable", "unanswerable", "injection"}
