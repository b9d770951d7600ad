# sigmw: the two commands a newcomer needs are `make demo` and `make test`.
# Both set everything up themselves (venv, pip packages, Debian packages as root)
# and work whether or not this machine's kernel has SCTP: without it they boot a
# small VM whose kernel has it (see docs/testbed.md).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RESULTS := .bench

.PHONY: setup testbed-deps lint typecheck unit sctp test demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py sigmw/diameter/_speedups.[ch] sigmw/diameter/_hotpath.c sigmw/diameter/_shed.c sigmw/diameter/_shedsend.c sigmw/diameter/_direct.c sigmw/io/_mmsg.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Debian packages for the real-kernel bench (qemu, a kernel with sctp.ko, iproute2, ...)
# and for the unit tests that run real peers on TCP (freeDiameterd, gcc for the bench tools).
testbed-deps:
	bash scripts/install-testbed.sh

lint: setup
	$(VENV)/bin/ruff check sigmw tests
	$(VENV)/bin/ruff format --check sigmw tests

typecheck: setup
	$(VENV)/bin/mypy

unit: setup testbed-deps
	$(PY) -m pytest -q tests/unit

# The SCTP suite needs root and kernel SCTP: run it here if we have both, else in the VM.
sctp: setup testbed-deps
	@mkdir -p $(RESULTS)
	@if [ "$$(id -u)" = 0 ] && $(PY) -m sigmw check-sctp >/dev/null 2>&1; then \
		echo "== SCTP suite on this kernel"; \
		$(PY) -m pytest -p no:cacheprovider -q tests/sctp; \
	else \
		echo "== SCTP suite in a VM (this kernel has no SCTP, or we are not root)"; \
		$(PY) -m sigmw.testbed.vm --timeout 2700 -- \
			$(abspath $(PY)) -m pytest -p no:cacheprovider -q tests/sctp; \
	fi

test: lint typecheck unit sctp

demo: setup testbed-deps
	$(PY) -m sigmw demo

clean:
	rm -rf $(VENV) $(RESULTS) .mypy_cache .ruff_cache .pytest_cache
