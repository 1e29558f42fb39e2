# One command sets up and runs; one sets up and tests. Both build the venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Portable llama.cpp build: the default -march=native build crashed with "Illegal
# instruction" on our CI machines. pip caches the built wheel, so only the first set-up
# on a machine compiles (about 7 minutes on 2 cores).
PORTABLE_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF

.PHONY: setup demo lint test bench doctor studio postgres clean

setup: $(VENV)/.installed

# torch goes in first, at the one version that installs as a CPU build (any other, or an
# unpinned torch, pulls a CUDA build of several GB); the finetune extra then accepts it.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(PORTABLE_CMAKE_ARGS)" $(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(VENV)/bin/tierflow run ticket_triage --input @samples/ticket.txt --thread demo-$$(date +%s)

# Lint and types (configuration: pyproject.toml's [tool.ruff] and [tool.mypy]). mypy reads
# the installed layout through a symlink tree (.ci/typecheck.sh says why).
SOURCE_FOLDERS := agents graphs tools model_tiers evals tiers tierflow
lint: setup
	$(VENV)/bin/ruff check $(SOURCE_FOLDERS) tests setup.py
	.ci/typecheck.sh $(PY)

# The scale-out test needs a real PostgreSQL: .ci/postgres.sh installs (Debian) and starts
# one on loopback unless TIERFLOW_TEST_PG_DSN already points at a server.
test: setup lint
	dsn="$${TIERFLOW_TEST_PG_DSN:-}"; [ -n "$$dsn" ] || dsn="$$(.ci/postgres.sh)" || exit 1; \
	TIERFLOW_TEST_PG_DSN="$$dsn" $(PY) -m pytest -q -rs

# Figures print as tables; each module's docstring says what it measures.
bench: setup
	$(PY) -m tierflow.evals.bench.embedded
	$(PY) -m tierflow.evals.bench.openmp
	$(PY) -m tierflow.evals.bench.triage_messages
	$(PY) -m tierflow.evals.bench.checkpoint_growth
	$(PY) -m tierflow.evals.bench.finetune

doctor: setup
	$(VENV)/bin/tierflow doctor

studio: setup
	$(VENV)/bin/tierflow studio

postgres:
	.ci/postgres.sh

clean:
	rm -rf $(VENV) .tierflow
