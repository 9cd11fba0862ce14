# The README's two commands are `make demo` and `make test`; they and `make lint` run setup first
# (idempotent), so each works on a fresh machine.
PY := .venv/bin/python
.PHONY: setup demo test lint bench fuzz

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m bridge.app.cli demo

test: setup
	$(PY) -m pytest -q tests

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

bench: setup
	$(PY) -m bench

# The fuzzing campaign of docs/reliability.md: every decoder, 1 000 000 executions each, 2 at a time.
fuzz: setup
	$(PY) -m tests.fuzz.run campaign --runs 1000000 --jobs 2
