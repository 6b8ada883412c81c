# blinaetl: two commands after cloning -- `make run` and `make test`.
# Needs only python3 (3.11+), pip and make: uv is bootstrapped into .tools/, the locked
# environment into .venv/.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo

# No bytecode compile of the whole environment at install (11,465 files, about 150 s on two cores
# on a fresh clone): Python writes bytecode for what a command imports, on its first import.
# This machine sets PYTHONDONTWRITEBYTECODE=1, which would make every run pay the compile again.
export UV_COMPILE_BYTECODE := 0
unexport PYTHONDONTWRITEBYTECODE
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL := WARNING

.PHONY: run test lint format serve bench dict clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

## run: generate the demo cohort if absent, then run the pipeline flow on it
run: $(VENV)/.synced
	@test -d $(DEMO)/landing || $(BIN)/blinaetl synth --patients 65 --seed 2017 --out $(DEMO)
	@$(BIN)/blinaetl run --landing $(DEMO)/landing --demo; rc=$$?; \
	  if [ $$rc -eq 3 ]; then echo "make run: published; the demo cohort's planted defects are listed in the report"; exit 0; fi; \
	  exit $$rc

## test: lint and the test suite on TEST_WORKERS pytest-xdist workers (default 2: CI has 2 cores);
## the tests of one session cohort share one worker (conftest.py), so each cohort is built once.
## ruff first (a second); then sqlfluff and mypy (about 20 s and 60 s CPU, one core each) run
## beside pytest at a lower priority (nice LINT_NICE), so they take the CPU pytest's workers
## leave idle (waits on child processes, servers and the browser) instead of 37 s before the
## tests; their output is printed after pytest's, and test fails if any of the three fails
TEST_WORKERS ?= 2
LINT_NICE ?= 10
SQLFLUFF := $(BIN)/sqlfluff lint sql --disable-progress-bar
MYPY := $(BIN)/mypy blinaetl flows
test: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@echo "nice -n $(LINT_NICE) $(SQLFLUFF) & nice -n $(LINT_NICE) $(MYPY) & $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup"
	@out=$$(mktemp -d); \
	  nice -n $(LINT_NICE) $(SQLFLUFF) >$$out/sqlfluff 2>&1 & sql=$$!; \
	  nice -n $(LINT_NICE) $(MYPY) >$$out/mypy 2>&1 & typed=$$!; \
	  $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup; tested=$$?; \
	  wait $$sql; linted=$$?; wait $$typed; checked=$$?; \
	  echo "$(SQLFLUFF): exit status $$linted"; cat $$out/sqlfluff; \
	  echo "$(MYPY): exit status $$checked"; cat $$out/mypy; rm -rf $$out; \
	  test $$tested -eq 0 && test $$linted -eq 0 && test $$checked -eq 0

# sqlfluff and mypy each use one core (mypy about 60 s CPU on a fresh clone, no cache; sqlfluff
# about 20 s): side by side on the two cores instead of one after the other; lint fails if
# either fails
lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@echo "$(SQLFLUFF) & $(MYPY)"
	@$(SQLFLUFF) & sql=$$!; \
	  $(MYPY); typed=$$?; wait $$sql; linted=$$?; \
	  test $$typed -eq 0 && test $$linted -eq 0

format: $(VENV)/.synced
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/sqlfluff fix sql --disable-progress-bar

## serve: start a Prefect server on 127.0.0.1:PREFECT_PORT (default 4200) if none answers (its UI told that address), then serve the nightly
## deployment of prefect.yaml with its schedule (Ctrl-C or SIGTERM stops serving and the server it started; the schedule stays active)
serve: $(VENV)/.synced
	@test -d $(DEMO)/landing || $(BIN)/blinaetl synth --patients 65 --seed 2017 --out $(DEMO)
	BLINAETL_HOME=$(CURDIR) $(BIN)/python -m flows.serve --port $${PREFECT_PORT:-4200}

## bench: every figure of issue 20's table with a verdict (core/floor at 10,000 patients by
## default, 21 MB / 100 MB duplicate-heavy deliveries, one source changed, warm make run), then
## the assertion benchmark
## (see docs/performance.md)
# every figure of issue 20's table with a verdict, quick sizes by default; the issue's sizes:
# make bench BENCH_FLAGS="--patients 100000 300000 --make-run-repeat 3" (a quiet machine)
BENCH_FLAGS ?=
bench: $(VENV)/.synced
	$(BIN)/python benchmarks/issue20_report.py $(BENCH_FLAGS)
	$(BIN)/python benchmarks/assertion_benchmark.py

## dict: regenerate docs/data-dictionary.md from the published database
dict: $(VENV)/.synced
	$(BIN)/blinaetl dict --db warehouse/blina.duckdb --out docs/data-dictionary.md

clean:
	rm -rf warehouse reports $(DEMO) .prefect
