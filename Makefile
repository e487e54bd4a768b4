# Two entry points for a fresh machine: `make repro` and `make test`.
# Both create .venv from the pinned constraints on first use; nothing else needs installing.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: repro test lock bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; leadcal needs Python 3.11 (set PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

## Set up, then run the whole calibration pipeline on the bundled sample data.
repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

## Set up, then run the test suite: two workers (the machine's two cores), each test module on one
## worker, so a module's fixtures (a DVC project, a generated export) are built once.
test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 --dist loadscope

## Re-pin every transitive dependency after changing pyproject.toml.
lock:
	rm -rf /tmp/leadcal-lock && $(PYTHON) -m venv /tmp/leadcal-lock
	/tmp/leadcal-lock/bin/pip install --quiet -e '.[test,postgres,spark]'
	/tmp/leadcal-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

bench: $(STAMP)
	$(BIN)/python benchmarks/repro_time.py

clean-venv:
	rm -rf $(VENV)
