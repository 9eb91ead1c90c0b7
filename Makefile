# medtl set-up and checks. Two commands do everything on a fresh machine:
#   make demo   - install medtl and run the whole demo (data, pretraining, transfer, calibration,
#                 reports, then the app)
#   make test   - install what the tests need and run them
# torch is pinned to the 2.13.0 CPU wheel through constraints.txt (pyproject states torch>=2.10).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check -c constraints.txt
DEMO_ARGS ?=

.PHONY: venv install install-dev browser pacs-server postgres-server proxy demo test lint bench schemas clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check --upgrade pip

venv: $(PY)

install: $(PY)
	$(PIP_INSTALL) -e ".[app,report]"

install-dev: $(PY)
	$(PIP_INSTALL) -e ".[app,report,pacs,postgres,onnx,dev]"

# The browser test drives Debian's Chromium (Playwright's own browser download is not used).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else \
	    echo "note: install Debian's chromium (sudo apt-get install chromium) to run the browser test"; \
	  fi; \
	fi

# The PACS tests start Debian's Orthanc (with its DICOMweb plugin) and use dcmtk's storescu
# and dsrdump; the conformance tests run dicom3tools' dciodvfy on every object medtl writes.
pacs-server:
	@if [ ! -x /usr/sbin/Orthanc ] || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || ! command -v storescu >/dev/null || ! command -v dciodvfy >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb dcmtk dicom3tools >/dev/null; \
	  else \
	    echo "note: install Debian's orthanc, orthanc-dicomweb, dcmtk and dicom3tools (sudo apt-get install orthanc orthanc-dicomweb dcmtk dicom3tools) to run the PACS and conformance tests"; \
	  fi; \
	fi

# The review-store tests also run on a PostgreSQL server they start from Debian's binaries
# (initdb/pg_ctl as the postgres user in a temp folder); under CI they fail if it is missing.
postgres-server:
	@if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	  else \
	    echo "note: install Debian's postgresql (sudo apt-get install postgresql) to run the PostgreSQL half of the review-store tests"; \
	  fi; \
	fi

# The reverse-proxy test runs docs/deploy/nginx.conf with Debian's nginx as a plain process
# (temp prefix and ports, stopped by PID); the distribution's service is not used.
proxy:
	@if [ ! -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx openssl >/dev/null; \
	  else \
	    echo "note: install Debian's nginx (sudo apt-get install nginx) to run the reverse-proxy test"; \
	  fi; \
	fi

demo: install
	$(VENV)/bin/medtl demo $(DEMO_ARGS)

test: install-dev browser pacs-server postgres-server proxy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -q

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) bench/run_all.py

schemas: install
	$(PY) -m medtl.schemas --write data_schemas

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
