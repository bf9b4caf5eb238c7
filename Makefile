# Two commands do everything: `make demo` (fetch, train, evaluate) and `make test`.
# Both create and fill the project's own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN ?= demo

.PHONY: demo test venv dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files make re-runs instant; they are redone when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	@# The browser test drives Debian's Chromium; install it when missing and we may (root with apt-get).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: chromium not installed; the browser tests will skip"
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

# Fetch MNIST, train the default CPU recipe, evaluate the best checkpoint on test, write the report.
demo: venv
	$(BIN)/digitrec data fetch
	$(BIN)/digitrec train --name $(RUN) --overwrite

test: dev
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
