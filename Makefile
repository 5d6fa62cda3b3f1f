# aigov: `make serve` and `make test` do everything on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
AIGOV  := $(VENV)/bin/aigov
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: venv serve test lint pytest bench clean deploy-tools deploy-files

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

## test: lint, type-check and run the whole suite
test: lint pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# pytest exits 5 when it collects no test; that is not a failure of the build.
pytest: venv
	$(PY) -m pytest -q -n auto; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/results
