.PHONY: install test test-all lint format typecheck bench

install:
	pip install torch==2.13.0 && pip install -e ".[all,ray]" -e examples/numpy_plugin

test:
	pytest -n 2 --dist loadfile

test-all:
	pytest -m "slow or not slow"

lint:
	ruff check . && ruff format --check .

format:
	ruff format . && ruff check --fix .

typecheck:
	mypy cvae_bench

bench:
	pytest benchmarks --benchmark-only
