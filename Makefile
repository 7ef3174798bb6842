# The two commands: `make demo` and `make test`. Both create or refresh .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmembed-installed
# Anything that changes what must be installed refreshes the environment.
INSTALL_INPUTS := constraints.txt requirements/dev.txt $(wildcard core/pyproject.toml packages/*/pyproject.toml integrations/*/pyproject.toml)

export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
# mkdocs-material prints a banner about its successor on every build.
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test docs test-compat release-check lint typecheck bench venv clean

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
	# Headless Chromium for the browser test of `mmembed serve` (Playwright drives it; it
	# cannot download its own browsers here); best effort, the test is skipped without it.
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
		echo "note: chromium not installed; the search-page browser test will be skipped"; }
	touch $@

demo: $(STAMP)
	$(PY) examples/demo.py $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m mypy benchmarks examples tools compat
	$(PY) tools/release.py versions
	# The docs site, strictly: a broken link, anchor or API reference fails (tests/docs runs its snippets).
	$(PY) -m mkdocs build --strict --quiet --site-dir .cache/site-check
	$(PY) -m pytest $(PYTEST_ARGS)

# The documentation site (mkdocs.yml, docs/) into site/; `mkdocs serve` previews it.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

# Every distribution at the lowest versions it declares for its key dependencies (compat/lowest.txt),
# installed from source as a user's pip would (not editable), then compat/smoke.py runs each
# adapter's README path. A fresh venv each time, so nothing of .venv leaks in.
COMPAT_VENV := .venv-compat
test-compat:
	rm -rf $(COMPAT_VENV)
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install -q -c compat/lowest.txt ./core ./packages/testing \
		./integrations/llamaindex './integrations/langchain[classic]' ./integrations/haystack
	$(COMPAT_VENV)/bin/python compat/smoke.py

# Builds every sdist, a wheel from each sdist and a wheel from the tree, then checks them:
# twine's metadata check, py.typed, no tests, licence, long description, same file lists.
release-check: $(STAMP)
	$(PY) tools/release.py build dist
	$(PY) -m twine check --strict dist/*/*.whl dist/*/*.tar.gz
	$(PY) tools/release.py check-dists dist

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy
	$(PY) -m mypy benchmarks examples tools compat

bench: $(STAMP)
	$(PY) benchmarks/maxsim.py
	$(PY) benchmarks/render.py

clean:
	rm -rf $(VENV) $(COMPAT_VENV) dist demo_index site
