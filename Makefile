# Two commands on a fresh machine (python3 + pip, nothing else):
#   make demo   - install into .venv if needed, then run the whole pipeline on the toy corpus
#   make test   - install into .venv if needed, then run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dv-installed
EXTRAS ?= dev,eval

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	# resemblyzer (SECS) without its declared dependencies: see the eval extra in pyproject.toml.
	case ',$(EXTRAS),' in *,eval,*) $(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'resemblyzer==0.1.4';; esac
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dv demo -o demo

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf demo .pytest_cache
