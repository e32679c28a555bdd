.PHONY: install lock test test-all lint format typecheck bench docs results

# Everything, from the lock (what .ci/run and the README's test command install).
install:
	pip install torch==2.13.0 && pip install --require-hashes -r requirements/all.txt && pip install --no-deps -e ".[all,ray]" -e examples/numpy_plugin

# Regenerate the locks from pyproject.toml's ranges (uv, pinned): every extra, then the quick start's subset
# constrained to the same versions. Where torch's CPU index cannot be reached, point TORCH_CPU at a folder
# holding the wheel: make lock TORCH_CPU="--find-links /opt/wheels".
UV ?= uvx uv@0.13.9
TORCH_CPU ?= --extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match
LOCK = $(UV) pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--generate-hashes --custom-compile-command "make lock" --override requirements/torch-cpu.txt $(TORCH_CPU) --quiet
lock:
	$(LOCK) --extra all --extra ray -o requirements/all.txt
	$(LOCK) --extra torch --extra report -c requirements/all.txt -o requirements/quickstart.txt

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

# The documentation site, strict: a broken link or anchor fails the build.
docs:
	mkdocs build --strict --site-dir site

# The README's results table, generated from the committed bench.json (docs/development.md).
results:
	python -m cvae_bench.bench.results_table docs/results/bench.json README.md
