# One entry point for people and CI. `make test` and `make demo` work on a
# fresh Debian machine: they build .venv, install the package with its test
# extras, and (as root) the system packages the tests run for real.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
APT_PACKAGES := prometheus prometheus-alertmanager chromium fonts-liberation victoria-metrics
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo lint bench system-deps venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

system-deps:
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
	    $(APT_PACKAGES) ; }

lint: venv
	$(BIN)/ruff check .

# Two workers: most tests wait on real services and processes, so on two cores pytest
# takes about half as long; a test file stays on one worker, with its fixtures.
test: venv system-deps lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

demo: venv
	$(BIN)/larpix-monitor demo

bench: venv
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_plots.py
	$(BIN)/python benchmarks/bench_service.py
	$(BIN)/python benchmarks/bench_quality.py
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_channels.py
	$(BIN)/python benchmarks/bench_checkpoint.py
	$(BIN)/python benchmarks/bench_rotation.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
