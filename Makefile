PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test install clean fuzz bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The server runs from this folder (python app.py), so only the dependencies pyproject.toml
# names are installed, not the project itself.
DEPS = $(BIN)/python -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	print("\n".join(p["dependencies"] + [d for extra in sys.argv[1:] for d in p["optional-dependencies"][extra]]))'

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	@$(DEPS) > $(VENV)/requirements.txt
	$(BIN)/pip install --quiet -r $(VENV)/requirements.txt
	touch $@

$(TEST_STAMP): pyproject.toml $(STAMP)
	@$(DEPS) test > $(VENV)/requirements-test.txt
	$(BIN)/pip install --quiet -r $(VENV)/requirements-test.txt
	touch $@

install: $(STAMP)

# app.py prepares the keystore, schema and TLS files, then starts gunicorn.
run: $(STAMP)
	$(BIN)/python app.py

# tests/setup-system.sh installs keytool, chromium and chromium-driver when they are missing.
test: $(TEST_STAMP)
	bash tests/setup-system.sh
	$(BIN)/python -m pytest -q

# Longer fuzzing of the assertion and JWKS parsers (a short run is part of make test).
FUZZ_TIME ?= 60
fuzz: $(TEST_STAMP)
	$(BIN)/pip install --quiet atheris
	mkdir -p var/fuzz-corpus
	$(BIN)/python fuzz/fuzz_jws.py var/fuzz-corpus fuzz/corpus -max_total_time=$(FUZZ_TIME) -artifact_prefix=var/

# Token-endpoint benchmark against the reference servers (see bench/README.md).
BENCH_PEERS_SRC ?= ../shared/bench-peers
# Three interleaved rounds: the machine's speed drifts too much for one run's ratios.
BENCH_ARGS ?= --rounds 3
bench: $(STAMP)
	mkdir -p bench/.peers
	cp -rf $(BENCH_PEERS_SRC)/. bench/.peers/
	chmod -R u+w bench/.peers
	[ -f bench/.peers/.setup-ok ] || (cd bench/.peers && ./setup.sh && touch .setup-ok)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
