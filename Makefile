# onetools: `make demo` and `make test` each set up everything on a fresh Debian machine (root):
# system packages via apt-get, a .venv with the package installed (non-editable), then their job.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := python3 python3-venv python3-dev build-essential pkg-config \
                libaugeas-dev augeas-lenses mariadb-server postgresql \
                default-libmysqlclient-dev time \
                openssh-server openssh-client iproute2 \
                docker-registry skopeo qemu-utils e2fsprogs

.PHONY: all demo test lint typecheck pytest system-deps venv install clean

all: test

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "ERROR : run as root to install:$$missing" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.deps-stamp: pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '.[test]'
	touch $@

venv: system-deps $(VENV)/.deps-stamp

# Non-editable install: tests run against what a user gets from the wheel (data files included).
install: venv
	$(BIN)/pip install -q --no-deps --force-reinstall .
	rm -rf build

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: venv
	$(BIN)/mypy src

pytest: install
	cd tests && PATH="$(CURDIR)/$(BIN):$$PATH" ../$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) .

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .ruff_cache
