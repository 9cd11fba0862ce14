"""Benchmarks behind docs/performance.md; ``python -m bench [name ...]`` runs them (``make bench``)."""
