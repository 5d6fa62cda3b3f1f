# aigov: `make serve` and `make test` do everything on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
AIGOV  := $(VENV)/bin/aigov
COV    := $(PY) -m coverage
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: venv serve test lint pytest covered coverage mutate bench clean deploy-tools deploy-files

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## serve: create the venv, install aigov, run the daemon on the embedded SQLite default
serve: venv
	@echo "aigov: starting the daemon (Ctrl-C stops it). In another terminal:"
	@echo "  $(AIGOV) keys create --name demo"
	@echo "  curl -H 'Authorization: Bearer <token>' -H 'Content-Type: application/json' \\"
	@echo "       -d '{\"model\":\"gpt-4o\",\"operation\":\"chat\",\"input_text\":\"hello\"}' localhost:8080/v1/check"
	$(AIGOV) serve

## test: lint, type-check and run the whole suite under coverage (CI: fails below the floor in pyproject.toml)
test: lint covered

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# pytest exits 5 when it collects no test; that is not a failure of the build.
## pytest: the suite alone, without coverage
pytest: venv
	$(PY) -m pytest -q -n auto; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# The suite under coverage, every Python subprocess included ([tool.coverage] in pyproject.toml);
# the data of all processes is combined into .coverage, and the total checked against the floor.
covered: venv
	@$(COV) erase
	$(COV) run -m pytest -q -n auto; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; \
	  $(COV) combine -q; exit $$rc
	@printf 'line coverage of daemon/ and aigov_cli/, subprocesses included (%%): '; $(COV) report --format=total

## coverage: the suite under coverage, then the lines of daemon/ and aigov_cli/ that no test ran
coverage: covered
	$(COV) report

# Functions whose mutants `make mutate` runs (mutmut's names: module.x_function, module.xǁClassǁmethod).
MUTATE := 'daemon.ratelimit.memory.*' 'daemon.tokens.*' 'daemon.policy.detectors._base.x_luhn_ok*' \
          'daemon.policy.detectors.credit_card.*' 'daemon.policy.detectors.iban.*' 'daemon.policy.detectors.us_ssn.*' \
          'daemon.auth.*' 'daemon.storage.records.*' 'daemon.storage.sqlite_decisions.x_append_chained*' \
          'daemon.storage.sqlite_decisions.xǁSqliteDecisionReaderǁverify_chains*' \
          'daemon.storage.sqlite_decisions.xǁSqliteDecisionReaderǁprune*'

## mutate: mutation testing of the core (mutmut; about 55 minutes on 2 cores, not in CI): score per module, survivors
mutate: venv
	rm -rf mutants
	$(VENV)/bin/mutmut run $(MUTATE) > mutants.log 2>&1 || (tail -30 mutants.log; exit 1)
	$(PY) tests/mutation_report.py $(MUTATE)

## bench: measure throughput, latency, detectors and the decision log (numbers in bench/results/)
bench: venv
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || true
	$(PY) bench/run.py

## deploy-tools: the validators of the deployment files (docker-compose, promtool, kubernetes-validate, hadolint)
deploy-tools: venv
	.ci/deploy-tools

## deploy-files: regenerate the files under deploy/ that aigov generates (dashboard, scrape config, policy)
deploy-files: venv
	$(PY) deploy/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/results .coverage .coverage.* htmlcov mutants mutants.log
