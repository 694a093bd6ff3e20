# evalq: everything starts from python3 and make.
#   make demo   the main job on an embedded Redis
#   make test   the whole test suite (unit, integration with real Redis and real workers)
#   make chaos  the reliability scenarios at their long scale (docs/reliability.md)
#   make bench  benchmarks, reported as ratios against a baseline measured in the same run
#   make bench-full  the same at full size: dashboard pages over 1,000,000 records, 20,000-job
#               throughput runs, 3 trials
#   make lint   ruff and mypy --strict on config/, middleware/ and dashboard/

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv

# Use the machine's Python; never download one.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: all demo test chaos bench bench-full lint sync clean

all: test

$(UV):
	@$(PYTHON) -m venv $(TOOLS) 2>/dev/null || { rm -rf $(TOOLS); $(PYTHON) -m venv --without-pip $(TOOLS); }
	@if [ -x $(TOOLS)/bin/pip ]; then \
		$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); \
	else \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/lib uv==$(UV_VERSION) \
		&& mkdir -p $(TOOLS)/bin && ln -sf ../lib/bin/uv $(UV); \
	fi

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --quiet
	@touch $@

sync: $(VENV)/.synced

demo: sync
	$(VENV)/bin/evalq demo

test: sync
	$(VENV)/bin/python -m pytest

# The scenarios of tests/reliability at their long scale: 3 SIGKILL-loop runs of 320 jobs with
# 8 kills each, 3 Redis restarts, longer outages, 1,500 fuzz examples per input (~10 min).
chaos: sync
	EVALQ_CHAOS=long $(VENV)/bin/python -m pytest -m reliability -rA -s --timeout 1200 tests/reliability

bench: sync
	$(VENV)/bin/python -m bench

# Full size: 1,000,000 queued messages and job records, 100,000 dead letters (dashboard);
# 20,000 jobs x 3 trials (throughput).
bench-full: sync
	EVALQ_BENCH_FULL=1 EVALQ_BENCH_MODE=full $(VENV)/bin/python -m bench

lint: sync
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(TOOLS) $(VENV) .evalq .pytest_cache .mypy_cache .ruff_cache
