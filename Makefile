# The two commands: `make demo` and `make test`. Both create or refresh .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmembed-installed
# Anything that changes what must be installed refreshes the environment.
INSTALL_INPUTS := constraints.txt requirements/dev.txt $(wildcard core/pyproject.toml packages/*/pyproject.toml integrations/*/pyproject.toml)

export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint typecheck bench venv clean

venv: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -r requirements/dev.txt
	# Parity reference only (never a runtime dependency): it pins torch<2.14, so no deps.
	$(PY) -m pip install -q --no-deps colpali-engine==0.3.18
	# poppler-utils backs the optional pdf2image loader backend and its tests; best effort
	# (as root with apt), otherwise those tests check the actionable "install poppler" error.
	command -v pdftoppm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq poppler-utils >/dev/null) || \
		echo "note: poppler-utils not installed; pdf2image-backend tests will be skipped"; }
	# LibreOffice (headless) converts .docx/.pptx/.xlsx for the Office loader and its tests; best
	# effort like poppler, otherwise those tests are skipped with the reason.
	command -v soffice >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			libreoffice-core-nogui libreoffice-writer-nogui libreoffice-calc-nogui \
			libreoffice-impress-nogui >/dev/null) || \
		echo "note: LibreOffice not installed; the real-Office conversion tests will be skipped"; }
	touch $@

demo: $(STAMP)
	$(PY) examples/demo.py $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m mypy benchmarks examples
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy
	$(PY) -m mypy benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/maxsim.py
	$(PY) benchmarks/render.py

clean:
	rm -rf $(VENV) demo_index
