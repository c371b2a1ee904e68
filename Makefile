# One task runner. `make run` and `make test` work on a fresh machine: they create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test test-fast lint format eval eval-cnil bench ingest clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

run: $(STAMP)  ## serve the chat at http://127.0.0.1:7860, then index seeds/ (or RAG_DOCS_DIR) if needed
	$(BIN)/python app.py

ingest: $(STAMP)
	$(BIN)/python -m rag ingest

eval: $(STAMP)  ## score ours and the llama-index baseline on the seed question set (reports/<timestamp>/)
	$(BIN)/python -m rag eval --pipeline both

eval-cnil: $(STAMP)  ## the CNIL set (../shared/bench): retrieval on all 512 questions, answers on 30, ours and the baseline
	$(BIN)/python -m rag eval --squad ../shared/bench/cnil_squad.json --limit 30 --pipeline both

bench: $(STAMP)  ## speed benchmark, ours vs the llama-index baseline (reports/bench-<timestamp>/)
	$(BIN)/python -m rag bench

test: $(DEV_STAMP)  ## the whole suite, real models included
	$(BIN)/python -m pytest -q

test-fast: $(DEV_STAMP)  ## skip the real-model tests
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(DEV_STAMP)
	$(BIN)/ruff check rag tests app.py
	$(BIN)/ruff format --check rag tests app.py
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff format rag tests app.py
	$(BIN)/ruff check --fix rag tests app.py

clean:
	rm -rf index/chroma.sqlite3 index/*-*-*-*-* .cache .pytest_cache .mypy_cache .ruff_cache
