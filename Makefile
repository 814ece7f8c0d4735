# Two commands do all set-up on a fresh machine with only Python 3.11+:
#   make run    install, then verify + benchmark the embedded default config into results/
#   make test   install, then lint, type-check and run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint clean browser

install: $(STAMP)

# Re-runs only when the requirements change (idempotent); the constraints file pins the
# CPU builds this machine needs while pyproject.toml keeps ranges.
$(STAMP): pyproject.toml constraints.txt examples/harness-mlx/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	# the example plugin (MLX's CPU build), which the tests verify and time as any plugin
	$(PY) -m pip install --quiet -c constraints.txt -e examples/harness-mlx
	touch $(STAMP)

run: install
	$(VENV)/bin/matmul-harness run

lint: install
	$(VENV)/bin/ruff check harness tests benchmarks examples
	$(VENV)/bin/mypy

test: lint browser
	$(VENV)/bin/python -m pytest

# Debian's chromium, for the headless-browser test of the HTML report, installed only when
# missing. Where it cannot be installed (not root, no apt-get) the test says so and skips,
# except under CI=true, where it fails.
browser:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	  --no-install-recommends chromium; } || echo "make browser: chromium not installed"

clean:
	rm -rf $(VENV)
