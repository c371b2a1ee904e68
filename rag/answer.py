"""Numbered sources -> prompt -> LLM -> parsed, checked citations -> Answer.

The pipeline for one (standalone) question over a list of source chunks:

1. The system message holds the instructions and the numbered sources, in the order
   given; the user message holds the question and the answer language, after the key
   passage (the source holding the sentence closest to the question, e5) quoted again:
   one of N fixed blocks, sent to the LLM slot that keeps that block's KV cache (see
   `Assistant.warm`), so only the question's own tokens are new. The model's
   reply streams out as it is written (`Token`s), except a leading NOT_FOUND. The model is
   stopped as soon as more would be thrown away (`Answerer._enough`): at a NOT_FOUND, at the
   first word past `max_sentences` + 1 sentences, or when it loops. A NOT_FOUND
   to a question in neither English nor the sources' language is asked again for an
   English answer (not streamed), which goes through the checks below and is then
   translated sentence by sentence, citations kept.
2. The reply is split into sentences with their [n] markers; markers pointing to no
   source are dropped. Sentences are checked in the order written, and once
   `max_sentences` (2, what the prompt asks for) have passed, the rest are dropped
   unchecked and unshown: the small model's text past that was stray or copied. A
   sentence the model left without a marker is given the source holding the source
   sentence most similar to it (e5), and must then pass the same checks as any other.
3. Each sentence is checked against its cited sources:
   - a figure that appears in no source fails it at once (the model's typical invention);
   - otherwise the model is asked, with the same cached system message, whether the cited
     source states the sentence (`check_messages`: where the source's passage block is held in
     an LLM slot, there, opening as the answer's prompt did with the whole passage quoted, so
     only the sentence and the last line are new; else in slot 0, its closest sentences quoted),
     and P("Yes") must reach the threshold (stricter when the
     sentence names someone or something, or states a figure, that its cited source does not
     mention, even if another source does; in German,
     where every noun is capitalised, only name- or acronym-shaped words count). Figures
     and names count as known only if the sources state them: the question does not count;
   - a sentence its cited source does not support is checked once more against the other
     source holding the sentence closest to it (e5): the small model often cites the
     neighbouring passage of the right one. If that source supports it, it is cited instead.
4. The fit check: the sentences that pass are shown to the model once more, beside the
   question and the evidence of their first citation: does this answer give what the
   question asks for? Its prompt is the support check's but for the last line, so after a
   one-sentence answer the server reads only that line. Below `fit_threshold` the answer is
   withdrawn (a sentence can be true of its source and answer another question).
5. Sentences that pass make `Answer.text`; the rest go to `Answer.unsupported`. No
   sentence left, a NOT_FOUND reply or a failed fit check means abstention: the shared
   "cannot answer" phrase in the question's language and no citations.
6. An abstention with a key passage quoted is asked again with the next key passage (the
   passage holding the best sentence of another passage, in its own slot), at most
   `retry_passages` times; that reply streams and goes through steps 2-5, and the first
   answer that passes is kept (`Answer.key_passages` lists the passages tried).

Deliberately not here: retrieval, follow-up rewriting, language detection (see
`assistant.py`); this module only turns sources + a question into a checked answer.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from rag import prompts
from rag.chunking import sentence_spans
from rag.citations import novel_names, novel_numbers, parse_answer, reply_cut, strip_markers
from rag.embeddings import Embedder
from rag.language import detect
from rag.llm import LLM, Completion, Message
from rag.tokens import count_tokens
from rag.types import Answer, Chunk, Citation, Sentence, Status, Token

log = logging.getLogger(__name__)

FIT_THRESHOLD = 0.7  # see AnswerConfig.fit_threshold
STRICT_SUPPORT = 0.8  # threshold when the sentence names something or states a figure absent from its source
EXCERPTS = 3  # source sentences quoted under the question to focus the small model
# A reply ending with one piece of text (8-80 characters) written four times over, looked for
# in its last LOOP_WINDOW characters as it streams in.
_LOOP = re.compile(r"(.{8,80}?)\1{3,}$", re.S)
LOOP_WINDOW = 400
MIN_EXCERPT_CHARS = 25
MAX_CACHED_VECTORS = 50_000  # sentence vectors kept between questions (~80 MB at 384 dims)


@dataclass(frozen=True)
class AnswerConfig:
    max_tokens: int = 200
    verify: bool = True
    support_threshold: float = 0.5
    excerpts: int = EXCERPTS
    # "quotes": the key sentences in full; "pointers": only their source numbers; "passage": the
    # whole passage holding the closest sentence, quoted before the question
    excerpt_style: str = "passage"
    translate_retry: bool = True  # a NOT_FOUND to a question in a third language: answer in English, translate
    # "passage" style: when the answer abstains, ask again with the next key passage quoted, at most
    # this many times (0 = never)
    retry_passages: int = 1
    # Minimum P(yes) that the checked answer gives what the question asks for (0 = not asked).
    # On the seed set's answers (benchmarks/fit_check.py): 0.57-0.80 for unanswerable questions, 0.63-0.93
    # for right answers; 0.7 withdrew 7 of 12 of the first and 1-2 of 30 of the second.
    fit_threshold: float = FIT_THRESHOLD
    # At most this many supported sentences, in the order written (0 = no limit). The prompt asks
    # for one or two; what the small model writes past that was stray or copied text in every case
    # seen (on the poisoned set: "AI assistant" and a poisoned page's phishing instruction, word for
    # word, which the support check passes since the page does say it).
    max_sentences: int = 2


def citation_for(number: int, chunk: Chunk, supported: bool = True) -> Citation:
    return Citation(
        number=number,
        text=chunk.text,
        doc_path=chunk.doc_path,
        title=chunk.title,
        date=chunk.date,
        start=chunk.start,
        end=chunk.end,
        chunk_id=chunk.id,
        supported=supported,
    )


def system_message(sources: Sequence[Chunk]) -> str:
    """Instructions + sources grouped by document, numbered 1..N in the given order."""
    groups: list[tuple[str, str, list[tuple[int, str]]]] = []
    for number, chunk in enumerate(sources, 1):
        if groups and groups[-1][0] == chunk.title and groups[-1][1] == chunk.date:
            groups[-1][2].append((number, chunk.text))
        else:
            groups.append((chunk.title, chunk.date, [(number, chunk.text)]))
    return prompts.SYSTEM.format(sources=prompts.format_sources(groups))


def passage_message(number: int, source: Chunk, question: str, language_name: str) -> str:
    """The user turn of the "passage" excerpt style: source `number` quoted, then the question."""
    return prompts.QUESTION_WITH_PASSAGE.format(
        number=number, passage=quoted(source), question=question, language=language_name
    )


def quoted(source: Chunk) -> str:
    """A source's text as a prompt opening with its passage block quotes it (one line)."""
    return " ".join(source.text.split())


class Answerer:
    def __init__(self, llm: LLM, embedder: Embedder | None = None, config: AnswerConfig | None = None):
        self.llm = llm
        self.embedder = embedder
        self.config = config or AnswerConfig()
        self._cache: dict[str, np.ndarray] = {}  # sentence -> passage vector

    def stream(
        self,
        question: str,
        sources: Sequence[Chunk],
        language: str,
        started: float | None = None,
        quote: bool = True,
    ) -> Iterator[Token | Status | Answer]:
        """Yield Tokens as the model writes, Status while checking, then one Answer.

        `quote=False` skips the key sentences under the question (for sources already
        trimmed to them by `focus`)."""
        started = started if started is not None else time.perf_counter()
        timings: dict[str, float] = {}
        system = system_message(sources)
        keys = self.key_passages(question, sources) if self._quotes_passage(quote) else []
        user, slot = self._user_message(question, sources, language, quote, keys[0] if keys else None)
        timings["excerpts_s"] = time.perf_counter() - started
        completion = Completion()
        streamed = False  # whether any of the first reply was shown as written
        for token in self._generate(system, user, completion, timings, started, slot):
            streamed = streamed or bool(token.text.strip())
            yield token
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
        _add_usage(usage, completion)
        in_english = self._retry_in_english(completion.text, language, sources)
        written = "en" if in_english else language
        if in_english:
            # The small model often replies NOT_FOUND when told to answer in a third language
            # (Spanish over French sources) yet answers the same question in English: ask again
            # in English, check that answer, then translate its kept sentences.
            yield Status("Answering in English, then translating")
            timings["first_try_s"] = timings.pop("first_token_s", 0.0)
            user, slot = self._user_message(question, sources, "en", quote, keys[0] if keys else None)
            completion = Completion()
            for _ in self._generate(system, user, completion, timings, started, slot):
                pass  # held back: the reader gets the translation
            _add_usage(usage, completion)
        checked = time.perf_counter()
        if self.config.verify:
            yield Status("Checking citations")
        in_slots = self._quotes_passage(quote)
        answer = self.check(question, completion.text, sources, language, system, written, in_slots)
        timings["check_s"] = time.perf_counter() - checked
        answer.key_passages = keys[:1]
        for key in keys[1 : 1 + self.config.retry_passages]:
            if not answer.abstained:
                break
            # The closest sentence's passage is not always the one that answers: ask once more with
            # the passage holding the best sentence of another passage quoted (its own LLM slot),
            # streamed like the first reply and checked the same way.
            yield Status("Looking in another passage")
            again = time.perf_counter()
            user, slot = self._user_message(question, sources, written, quote, key)
            completion = Completion()
            first_piece = True
            for token in self._generate(system, user, completion, {}, started, slot):
                if in_english:
                    continue  # held back: the reader gets the translation
                if first_piece and streamed:
                    token = Token("\n\n" + token.text.lstrip())  # a new paragraph after the reply before
                elif first_piece:
                    timings["first_token_s"] = time.perf_counter() - started  # the first words shown
                first_piece = False
                yield token
            streamed = streamed or not first_piece
            _add_usage(usage, completion)
            if self.config.verify:
                yield Status("Checking citations")
            retried = self.check(question, completion.text, sources, language, system, written, in_slots)
            timings["retry_passages_s"] = timings.get("retry_passages_s", 0.0) + time.perf_counter() - again
            tried = [*answer.key_passages, key]
            answer = answer if retried.abstained else retried
            answer.key_passages = tried
        if in_english:
            if not answer.abstained:
                yield Status("Translating")
                self._translate_answer(answer, system, usage)
                yield Token(answer.text)
            timings["first_token_s"] = time.perf_counter() - started  # nothing was shown before
        timings["total_s"] = time.perf_counter() - started
        answer.timings.update(timings)
        answer.usage.update(usage)
        yield answer

    def _quotes_passage(self, quote: bool) -> bool:
        """Whether the user turn quotes a key passage (the "passage" style, on the small-set path)."""
        return quote and self.config.excerpt_style == "passage" and self.config.excerpts > 0

    def key_passages(self, question: str, sources: Sequence[Chunk]) -> list[int]:
        """Source numbers ordered by their sentence closest to the question (e5), best first."""
        sentences = self._sentences(sources)
        if self.embedder is None or not sentences:
            return []
        scores = self._similarity(question, sentences)
        return list(dict.fromkeys(sentences[int(i)][0] for i in np.argsort(-scores, kind="stable")))

    def _user_message(
        self, question: str, sources: Sequence[Chunk], language: str, quote: bool, key: int | None = None
    ) -> tuple[str, int]:
        """The user turn (the question, the key sentences closest to it, quoted or pointed at, or
        the key passage `key`, and the answer language) and the LLM slot to send it to: passage k's
        slot for a key passage k the server has a slot for (see `Assistant.warm`), else 0."""
        language_name = prompts.LANGUAGE_NAMES.get(language, "English")
        if self._quotes_passage(quote):
            if key is None:
                return prompts.QUESTION.format(question=question, language=language_name), 0
            slot = key if key < self.llm.slots else 0
            return passage_message(key, sources[key - 1], question, language_name), slot
        quoted = self.excerpts(question, sources, self.config.excerpts) if self.config.excerpts and quote else []
        if quoted and self.config.excerpt_style == "pointers":
            pointers = " or ".join(f"[{n}]" for n in sorted({n for n, _ in quoted}))
            user = prompts.QUESTION_WITH_POINTERS.format(question=question, pointers=pointers, language=language_name)
        elif quoted:
            excerpts = "\n".join(f'[{n}] "{text}"' for n, text in quoted)
            user = prompts.QUESTION_WITH_EXCERPTS.format(question=question, excerpts=excerpts, language=language_name)
        else:
            user = prompts.QUESTION.format(question=question, language=language_name)
        return user, 0

    def _generate(
        self, system: str, user: str, completion: Completion, timings: dict[str, float], started: float, slot: int = 0
    ) -> Iterator[Token]:
        """Stream the model's reply as Tokens, holding back a leading NOT_FOUND."""
        messages: list[Message] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        held: str | None = ""  # text held back while it could still be the NOT_FOUND token
        pieces = self.llm.stream(messages, self.config.max_tokens, completion, slot)
        cut_short = False
        try:
            for piece in pieces:
                if "first_token_s" not in timings:
                    timings["first_token_s"] = time.perf_counter() - started
                cut = self._enough(completion.text)
                if cut is not None:
                    completion.text, cut_short = cut, True
                    break
                if held is not None:
                    held += piece
                    if prompts.NOT_FOUND_TOKEN.startswith(held.strip()) or held.strip().startswith(
                        prompts.NOT_FOUND_TOKEN
                    ):
                        continue
                    piece, held = held, None
                yield Token(piece)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()  # a reply cut short: the server stops writing it
        if cut_short:
            self.llm.cut()  # the server is still writing: e5 waits for it (`LLM.settle`)
        timings["generation_s"] = time.perf_counter() - started

    def _enough(self, reply: str) -> str | None:
        """The reply to keep if the model need not write any more of it, else None:
        - it holds the NOT_FOUND token: the check abstains on it wherever it stands;
        - a sentence has begun after the first `max_sentences` + 1: the check keeps at most
          `max_sentences` supported sentences, checked in order, so one spare is enough but
          for two failures (the reply is cut to the end of the spare);
        - its end repeats one piece of text a fourth time (the small model's loop; the reply is
          cut after the piece's first time)."""
        if prompts.says_not_found(reply):
            return reply
        if self.config.max_sentences:
            cut = reply_cut(reply, self.config.max_sentences + 1)
            if cut is not None:
                return cut
        loop = _LOOP.search(reply[-LOOP_WINDOW:])
        if loop and sum(c.isalpha() for c in loop.group(1)) >= 4:
            return reply[: len(reply) - len(loop.group()) + len(loop.group(1))]
        return None

    def _retry_in_english(self, reply: str, language: str, sources: Sequence[Chunk]) -> bool:
        """A NOT_FOUND to a question in neither English nor the sources' language."""
        if not self.config.translate_retry or language == "en" or not sources:
            return False
        if reply.strip() and not prompts.says_not_found(reply):
            return False
        return language != detect(" ".join(c.text for c in sources[:8])[:2000], default=language)

    def _translate_answer(self, answer: Answer, system: str, usage: dict[str, int]) -> None:
        """Translate each kept sentence into the answer's language (under the same cached system
        message), keeping its citations; a sentence whose translation is unusable stays as is."""
        language_name = prompts.LANGUAGE_NAMES.get(answer.language, "English")
        sentences = []
        for sentence in answer.sentences:
            if sentence.supported:
                sentence = replace(sentence, text=self.translate(sentence.text, language_name, system, usage))
            sentences.append(sentence)
        answer.sentences = sentences
        answer.text = _render([s for s in sentences if s.supported])

    def translate(self, text: str, language_name: str, system: str, usage: dict[str, int]) -> str:
        """`text` in `language_name` (asked under the same cached system message), or `text` itself
        if the reply is unusable."""
        messages: list[Message] = [
            {"role": "system", "content": system},
            {"role": "user", "content": prompts.TRANSLATE.format(language=language_name, text=text)},
        ]
        completion = self.llm.complete(messages, max_tokens=2 * count_tokens(text) + 20)
        _add_usage(usage, completion)
        lines = completion.text.strip().splitlines()
        out = strip_markers(lines[0]).strip().strip('"«»“”').strip() if lines else ""
        if prompts.says_not_found(out) or not len(text) / 3 <= len(out) <= 3 * len(text) + 20:
            return text
        return out

    def check(
        self,
        question: str,
        raw: str,
        sources: Sequence[Chunk],
        language: str,
        system: str,
        written_in: str | None = None,
        in_slots: bool = False,
    ) -> Answer:
        """`raw` (the model's reply, in `written_in`, by default `language`) parsed and checked.
        `in_slots`: the sources' passage blocks are held in LLM slots (see `check_messages`)."""
        shown = [citation_for(i, c) for i, c in enumerate(sources, 1)]
        answer = Answer(question=question, text="", citations=[], abstained=True, language=language, raw_text=raw)
        answer.sources = shown
        if not raw.strip() or prompts.says_not_found(raw):
            return self._abstain(answer, "the model found no answer in the sources")

        parsed = parse_answer(raw, len(sources))
        if not parsed:
            return self._abstain(answer, "the reply had no usable sentence")
        # Figures and names must come from the sources, not from the question: a question (or an
        # injected instruction) stating a figure or a name does not make the answer grounded.
        all_texts = [c.text for c in sources] + [c.title for c in sources] + [c.date for c in sources]
        written = written_in or language
        sentences: list[Sentence] = []
        for index, (text, cited) in enumerate(parsed):
            if self.config.max_sentences and sum(s.supported for s in sentences) >= self.config.max_sentences:
                log.info(
                    "%d supported sentences kept; the %d after them not checked",
                    self.config.max_sentences,
                    len(parsed) - index,
                )
                break
            if not cited:
                cited = self._best_source(text, sources)
            ok, score = (
                self._supported(question, text, cited, sources, all_texts, system, written, in_slots)
                if cited
                else (False, 0.0)
            )
            if not ok and cited and not novel_numbers(text, all_texts):
                # The small model often states a fact right but cites the neighbouring source:
                # check the source whose sentence is closest to the claim before dropping it.
                other = self._best_source(text, sources, cited)
                if other:
                    ok, score = self._supported(question, text, other, sources, all_texts, system, written, in_slots)
                    cited = other if ok else cited
            sentences.append(Sentence(text=text, citations=tuple(cited), supported=ok, support=score))
        answer.sentences = sentences
        kept = [s for s in sentences if s.supported]
        answer.unsupported = [s.text for s in sentences if not s.supported]
        if not kept:
            return self._abstain(answer, "no sentence of the reply is supported by its cited source")
        if self.config.verify and self.config.fit_threshold > 0:
            # Each sentence may be true of its source and still not answer the question.
            answer.fit = self.fits(question, kept, sources, system, in_slots)
            if answer.fit < self.config.fit_threshold:
                answer.withdrawn = [s.text for s in kept]
                return self._abstain(
                    answer, f"the answer does not give what the question asks for (P(yes) {answer.fit:.2f})"
                )
        numbers = sorted({n for s in kept for n in s.citations})
        answer.text = _render(kept)
        answer.citations = [shown[n - 1] for n in numbers]
        answer.abstained = False
        return answer

    def fits(
        self, question: str, kept: Sequence[Sentence], sources: Sequence[Chunk], system: str, in_slots: bool = False
    ) -> float:
        """P(yes) that the kept sentences give what `question` asks for (asked under the cached system
        message, with the evidence of their first cited source quoted, see `check_messages`)."""
        text = " ".join(s.text for s in kept)
        messages, slot = self.check_messages("fit", question, text, kept[0].citations[0], sources, system, in_slots)
        return self.llm.yes_probability(messages, slot)

    def check_messages(
        self, kind: str, question: str, claim: str, number: int, sources: Sequence[Chunk], system: str, in_slots: bool
    ) -> tuple[list[Message], int]:
        """The prompt of a "support" or "fit" check of `claim` against source `number`, and its LLM
        slot. Where that source's passage block is held in slot `number` (`in_slots`, and the server
        has that slot), the prompt opens as the answer's did there, the whole passage quoted, so only
        the proposed answer and the last line are new; else it is asked in slot 0, with the source's
        sentences closest to the claim quoted. Either way it starts with the question, the evidence
        and the claim, so a one-sentence answer's fit check shares all but its last line with the
        support check before it."""
        source = sources[number - 1]
        if in_slots and number < self.llm.slots:
            template = prompts.SUPPORT_IN_PASSAGE if kind == "support" else prompts.FIT_IN_PASSAGE
            user = template.format(number=number, passage=quoted(source), question=question, answer=claim)
            slot = number
        else:
            evidence = self._evidence(claim, source)
            if kind == "support":
                user = prompts.SUPPORT.format(question=question, number=number, evidence=evidence, sentence=claim)
            else:
                user = prompts.FIT.format(question=question, number=number, evidence=evidence, answer=claim)
            slot = 0
        return [{"role": "system", "content": system}, {"role": "user", "content": user}], slot

    def _evidence(self, claim: str, source: Chunk) -> str:
        """What a check quotes of `source`: its two sentences closest to `claim` (all of it without an embedder)."""
        return " ".join(t for _, t in self.excerpts(claim, [source], k=2)) or source.text

    def _abstain(self, answer: Answer, reason: str) -> Answer:
        answer.abstained = True
        answer.abstain_reason = reason
        answer.text = prompts.CANNOT_ANSWER.get(answer.language, prompts.CANNOT_ANSWER["en"])
        answer.citations = []
        return answer

    def _sentences(self, sources: Sequence[Chunk]) -> list[tuple[int, str]]:
        out = []
        for number, chunk in enumerate(sources, 1):
            for start, end in sentence_spans(chunk.text):
                text = " ".join(chunk.text[start:end].split())
                if len(text) >= MIN_EXCERPT_CHARS:
                    out.append((number, text))
        return out

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        assert self.embedder is not None
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            if len(self._cache) + len(missing) > MAX_CACHED_VECTORS:
                self._cache.clear()
            for text, vector in zip(missing, self.embedder.embed_passages(missing), strict=True):
                self._cache[text] = vector
        return np.vstack([self._cache[t] for t in texts])

    def _similarity(self, query: str, sentences: Sequence[tuple[int, str]]) -> np.ndarray:
        """e5 similarity of each (source number, sentence) to `query` (as a query)."""
        assert self.embedder is not None
        return self._vectors([t for _, t in sentences]) @ self.embedder.embed_query(query)

    def excerpts(self, query: str, sources: Sequence[Chunk], k: int = EXCERPTS) -> list[tuple[int, str]]:
        """The k source sentences most similar to the query (e5), in source order."""
        sentences = self._sentences(sources)
        if self.embedder is None or not sentences:
            return []
        scores = self._similarity(query, sentences)
        best = sorted(np.argsort(-scores)[:k])
        return [sentences[i] for i in best]

    def focus(self, query: str, chunks: Sequence[Chunk], budget: int) -> list[Chunk]:
        """Trim retrieved passages to their sentences closest to the query, `budget` tokens in all.

        The best sentence of the first passage (the one retrieval ranked first) is always kept:
        sentence similarity alone lost the right page's passage for 30 % of CNIL questions
        (given-passage hit@5 0.933 -> 0.633), because a lone sentence of another page can echo
        the question more closely. Then sentences are taken best first (e5 similarity) while
        they fit; each passage keeps the contiguous span from its first to its last chosen
        sentence, so `text == doc[start:end]` still holds and a citation points at the exact
        lines. Passages with no chosen sentence are dropped; the rest keep their retrieval order.
        """
        if self.embedder is None or budget <= 0 or not chunks:
            return list(chunks)
        spans = [(i, a, b) for i, c in enumerate(chunks) for a, b in sentence_spans(c.text)]
        if not spans:
            return list(chunks)
        texts = [" ".join(chunks[i].text[a:b].split()) for i, a, b in spans]
        scores = self._vectors(texts) @ self.embedder.embed_query(query)
        chosen: dict[int, list[tuple[int, int]]] = {}
        used = 0
        first = max((j for j, (i, _, _) in enumerate(spans) if i == 0), key=lambda j: scores[j], default=None)
        order = [int(j) for j in np.argsort(-scores)]
        if first is not None:
            order.remove(first)
            order.insert(0, first)
        for j in order:
            i, a, b = spans[j]
            cost = count_tokens(texts[j])
            if used + cost > budget and used:
                continue
            chosen.setdefault(i, []).append((a, b))
            used += cost
        out = []
        for i, chunk in enumerate(chunks):
            if i in chosen:
                a, b = min(a for a, _ in chosen[i]), max(b for _, b in chosen[i])
                text = chunk.text[a:b]
                out.append(
                    replace(chunk, text=text, start=chunk.start + a, end=chunk.start + b, tokens=count_tokens(text))
                )
        return out

    def _best_source(self, sentence: str, sources: Sequence[Chunk], cited: Sequence[int] = ()) -> list[int]:
        """The source (not among `cited`) holding the sentence most similar to `sentence` (e5), if any."""
        others = [(n, s) for n, s in self._sentences(sources) if n not in cited]
        if self.embedder is None or not others:
            return []
        scores = self._similarity(sentence, others)
        return [others[int(np.argmax(scores))][0]]

    def _supported(
        self,
        question: str,
        sentence: str,
        cited: Sequence[int],
        sources: Sequence[Chunk],
        all_texts: list[str],
        system: str,
        language: str = "",
        in_slots: bool = False,
    ) -> tuple[bool, float]:
        """(kept, best P(yes)) for one sentence (answering `question`) and its cited sources."""
        cited_texts = [sources[n - 1].text for n in cited]
        # A figure found in no source is invented, whatever the model thinks of it.
        if novel_numbers(sentence, all_texts):
            return False, 0.0
        if not self.config.verify:
            return True, 1.0
        threshold = self.config.support_threshold
        stated = [*cited_texts, *(text for n in cited for text in (sources[n - 1].title, sources[n - 1].date))]
        # a name or a figure its cited sources do not state (another source may) needs more
        if novel_names(sentence, stated, language) or novel_numbers(sentence, stated):
            threshold = max(threshold, STRICT_SUPPORT)
        best = 0.0
        for n in cited:
            messages, slot = self.check_messages("support", question, sentence, n, sources, system, in_slots)
            best = max(best, self.llm.yes_probability(messages, slot))
            if best >= threshold:
                return True, best
        return False, best


def _add_usage(usage: dict[str, int], completion: Completion) -> None:
    usage["prompt_tokens"] += completion.prompt_tokens
    usage["completion_tokens"] += completion.completion_tokens
    usage["cached_tokens"] += completion.cached_tokens


def _render(sentences: Sequence[Sentence]) -> str:
    """The answer text: each sentence followed by its [n] markers."""
    return " ".join(f"{s.text} " + "".join(f"[{n}]" for n in s.citations) for s in sentences)
