# The two commands: `make run` and `make test`. Everything they need is installed from here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-prod lint format chromium dcmtk dicom3tools orthanc nginx openjph node bench-tools \
	migrate demo clean backup restore

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps

# JavaScript tools, for development only: eslint and Node's own test runner (tests/js/). npm
# installs them from package-lock.json; the site itself never runs Node.
node:
	@command -v node >/dev/null && command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }

node_modules/.installed: package.json package-lock.json | node
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Browser tests drive Debian's Chromium (Playwright never downloads a browser of its own).
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-dejavu-core; }

# DIMSE tests use dcmtk's storescu and echoscu as the real hospital sender.
dcmtk:
	@test -x /usr/bin/storescu || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dcmtk; }

# The export's DICOMDIR is checked by dicom3tools' dciodvfy, the reference validator.
dicom3tools:
	@test -x /usr/bin/dciodvfy || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dicom3tools; }

# Orthanc (with its DICOMweb plugin) is the PACS that pulls a shared study in the tests, run in a
# network namespace of its own. Debian's package would also start a service listening on every
# interface: it is stopped and disabled at once; the tests start their own.
orthanc:
	@test -x /usr/sbin/Orthanc -a -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq orthanc orthanc-dicomweb && \
		{ $(SUDO) systemctl disable --now orthanc 2>/dev/null || \
		  $(SUDO) service orthanc stop 2>/dev/null || true; }; }

# The viewer's HTJ2K test makes its files with OpenJPH's own encoder, ojph_compress.
openjph:
	@test -x /usr/bin/ojph_compress || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openjph-tools; }

# The secure-link tests run the shipped site file (deploy/nginx/phr.conf) in a real nginx.
# Debian's `nginx` package has the secure_link module built in (nginx-light only adds a module).
# The tests start their own nginx on a free loopback port; Debian's service, if apt starts it,
# is not used.
nginx:
	@test -x /usr/sbin/nginx || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx; }

# Benchmarks (bench/serve.py) load nginx and gunicorn with wrk, a native HTTP load client, so
# that the client is not what limits the figures.
bench-tools: nginx
	@test -x /usr/bin/wrk || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }

migrate: $(VENV)/.run-deps
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py demo

run: demo
	@echo "Serving on http://127.0.0.1:$(PORT)/  (log in with the demo patient printed above)"
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

lint: $(VENV)/.dev-deps node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	node_modules/.bin/eslint .

format: $(VENV)/.dev-deps node_modules/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	node_modules/.bin/eslint --fix .

test: $(VENV)/.dev-deps chromium dcmtk dicom3tools orthanc nginx openjph lint
	node --test tests/js/
	$(BIN)/python -m pytest

# The same suite on PostgreSQL (127.0.0.1:5432) and a real S3 server (SeaweedFS on loopback).
test-prod: $(VENV)/.dev-deps chromium dcmtk dicom3tools orthanc nginx openjph
	$(BIN)/python scripts/test_prod.py

# The embedded default only (SQLite + local media); production: docs/operations.md, "Backups".
# `make backup [TO=DIR]` writes DIR/<timestamp>/ (default var/backups/<timestamp>/).
backup: $(VENV)/.run-deps
	$(BIN)/python scripts/backup.py backup $(if $(TO),--to "$(TO)")

# `make restore FROM=var/backups/<timestamp>`, with the site stopped.
restore: $(VENV)/.run-deps
	@test -n "$(FROM)" || { echo "usage: make restore FROM=var/backups/<timestamp>"; exit 2; }
	$(BIN)/python scripts/backup.py restore "$(FROM)"

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
