# make demo: set up what the commands need (nothing more) and render the sample campaign into out/.
# make test: add every extra and the test tools, then run the whole test suite twice: as Linux runs it,
#            then with workers started as new interpreters (spawn), as macOS and Windows run it.
# make test-fast: the tests not marked slow, once.
# make bench: add the benchmark tools (Typst) and run the benchmarks.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --quiet --disable-pip-version-check
EXTRAS := sign,watch,keyring

RUNTIME := $(VENV)/.runtime
TESTING := $(VENV)/.testing
BENCHING := $(VENV)/.benchmarking

.PHONY: demo test test-fast lint bench clean

$(RUNTIME): pyproject.toml constraints.txt
	@$(PYTHON) tools/check_system.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24"
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(TESTING): $(RUNTIME)
	$(PIP) install -c constraints.txt -e '.[$(EXTRAS),test]'
	@touch $@

$(BENCHING): $(TESTING)
	$(PIP) install -c constraints.txt -e '.[$(EXTRAS),test,bench]'
	@touch $@

demo: $(RUNTIME)
	$(BIN)/dispatch validate
	$(BIN)/dispatch render
	@echo "The letters are in out/icc-states-parties-2020/. Next: dispatch preview NA, dispatch --help"

lint: $(TESTING)
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -n auto
	DISPATCH_START_METHOD=spawn $(BIN)/python -m pytest -n auto --ignore tests/test_install.py --ignore tests/test_send_crash.py

# Everything not marked slow (the tests that render many PDFs or start servers and subprocesses): for a quick look.
test-fast: lint
	$(BIN)/python -m pytest -n auto -m "not slow"

bench: $(BENCHING)
	$(BIN)/python bench/render.py --recipients 125 --typst --whole
	$(BIN)/python bench/send.py --recipients 500

clean:
	rm -rf $(VENV) out .pytest_cache build
