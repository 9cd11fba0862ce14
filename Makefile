# The README's two commands are `make demo` and `make test`; both run setup first (idempotent).
PY := .venv/bin/python
.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m bridge.app.cli demo

test: setup
	$(PY) -m pytest -q tests

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: setup
	$(PY) -m bench
