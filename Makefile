# MecaPy serverless backend. The README's two commands: `make up`, `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

include infra/local.env
export
MECAPY_HOME ?= /var/lib/mecapy
MECAPY_RUN_DIR ?= $(CURDIR)/.run
export MECAPY_HOME MECAPY_RUN_DIR
export PATH := $(MECAPY_HOME)/bin:$(HOME)/.cargo/bin:$(PATH)
# Cargo builds for the host triple, always named: sam build (cargo lambda --target) and every other
# cargo command then share target/<triple>/ instead of compiling every dependency twice.
ifeq ($(origin CARGO_BUILD_TARGET),undefined)
CARGO_BUILD_TARGET := $(shell PATH="$(PATH)" rustc -vV | sed -n 's/^host: //p')
endif
export CARGO_BUILD_TARGET
WATCH_PORT ?= 9000
API ?= http://127.0.0.1:$(WATCH_PORT)/lambda-url

.PHONY: help up down status services images lambda-runtime migrate deploy demo serve test lint unit bench clean-test-dbs build release openapi event-schemas contract browser-test audit

help:
	@echo "make up      install and start every service, build, deploy the stack to LocalStack, run the demo"
	@echo "make test    the same services and deployment, then fmt, clippy, template lint, unit, integration and end-to-end tests"
	@echo "make demo    the demo journey alone, against the running stack"
	@echo "make deploy  sam build + samlocal deploy (after a code change: updates the stack in place)"
	@echo "make bench   deploy release builds, then binary and zip sizes, latencies and throughput"
	@echo "make browser-test  the web console in chromium through the deployed stack"
	@echo "make audit   vulnerability advisories of the Rust, npm and Python dependencies (needs the internet)"
	@echo "make serve   the functions under cargo lambda watch instead (no LocalStack deployment)"
	@echo "make down    stop everything make up started"

services:
	infra/services.sh up

# The compute image (debootstrap Debian + python3, numpy, scipy, matplotlib) and the stager image, built here, never pulled.
images: services
	infra/images.sh
	infra/stager-image.sh

migrate: services
	cargo run --quiet --bin migrate

# Lambdas inside LocalStack, offline: the init (infra/lambda-init) and the provided.al2023 image.
lambda-runtime: services
	infra/lambda-runtime.sh

# The SAM template deployed to LocalStack (sam build with cargo-lambda, then samlocal deploy).
deploy: migrate images lambda-runtime
	infra/deploy.sh all

up: deploy
	@$(MAKE) --no-print-directory demo
	@infra/dev-hints.sh

demo:
	@cargo run --quiet -p mecapy-e2e --bin demo

serve: migrate images
	@infra/serve.sh start $(WATCH_PORT)
	@infra/dev-hints.sh "$(API)"

down:
	-@infra/serve.sh stop
	infra/services.sh down

status:
	infra/services.sh status

build:
	cargo build --workspace --all-targets --all-features

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	infra/deploy.sh lint
	infra/contract/contract.sh lint
	infra/deny.sh check

# Vulnerability advisories of the Rust, npm and Python dependencies: needs the internet.
audit:
	infra/deny.sh audit

# The API's OpenAPI document, derived from the code (a test fails when the committed one differs).
openapi:
	cargo run --quiet -p mecapy-shared --bin openapi > openapi.yaml

# The events' JSON schemas (shared/events/), derived from shared::events (a test fails when a
# committed one differs).
event-schemas:
	cargo run --quiet -p mecapy-shared --bin event-schemas

# schemathesis against the deployed stack's API Gateway, over every operation of openapi.yaml.
contract:
	infra/contract/contract.sh test

# Test databases are named mecapy_test_<uuid>; drop the ones earlier runs left behind.
clean-test-dbs:
	@psql -qAt "$(DATABASE_URL)" -c "SELECT datname FROM pg_database WHERE datname LIKE 'mecapy\_test\_%'" \
	  | while read -r db; do psql -q "$(DATABASE_URL)" -c "DROP DATABASE IF EXISTS $$db WITH (FORCE)"; done

# infra/test.sh: the phases (some side by side) and a table of their times at the end.
test:
	infra/test.sh

# The web console in Debian's chromium (playwright-core) through the deployed stack (.run/stack.env).
browser-test:
	infra/browser.sh test

release:
	cargo build --release -p login -p callback -p upload -p compute-submit -p compute-dispatch -p upload-events -p rules -p upload-rules -p webhooks -p api-docs

# The stack is measured as AWS runs it: release builds of the functions (sam build takes minutes
# more than the debug build `make deploy` makes; `make deploy` or `make test` puts debug back).
bench: migrate images lambda-runtime
	SAM_BUILD_MODE=release infra/deploy.sh all
	RUST_LOG=warn cargo run --release --quiet -p mecapy-bench
