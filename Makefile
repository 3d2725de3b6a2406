# make run:  bootstrap .venv and start a demo node (console on this terminal and on telnet 127.0.0.1 32051)
# make test: bootstrap .venv, make sure PostgreSQL and Mosquitto answer and headless Chromium is installed, run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bootstrapped

.PHONY: bootstrap run test test-fast bench postgres mosquitto chromium clean

bootstrap: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=77"
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

run: bootstrap
	$(BIN)/anylog --home anylog-data --name demo --script conf/demo.al

postgres:
	tools/ensure-postgres

chromium:
	tools/ensure-chromium

mosquitto:
	tools/ensure-mosquitto

# One test worker more than cores: a third of the suite's time is spent waiting on node processes,
# sockets and fsync (2 cores: 2 workers 3:46, 3 workers 3:16, 4 workers 3:27, 2026-12-02).
WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

test: bootstrap postgres mosquitto chromium
	$(BIN)/lint-imports
	$(BIN)/python tools/draw-layers --check
	$(BIN)/pytest -q -n $(WORKERS) --dist loadgroup --durations=15

test-fast: bootstrap mosquitto
	$(BIN)/pytest -q -n $(WORKERS) -m "not e2e"

bench: bootstrap postgres mosquitto chromium
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) anylog-data build *.egg-info
