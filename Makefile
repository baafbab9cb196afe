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
WATCH_PORT ?= 9000
API ?= http://127.0.0.1:$(WATCH_PORT)/lambda-url

.PHONY: help up down status services images migrate serve test lint unit bench clean-test-dbs build release

help:
	@echo "make up      install and start the local services, migrate, serve the functions (cargo lambda watch)"
	@echo "make test    install and start what is missing, then fmt, clippy, unit and integration tests"
	@echo "make bench   binary sizes, JWT validation, in-process login and 1 MB upload latency"
	@echo "make down    stop everything make up started"

services:
	infra/services.sh up

# The compute image (debootstrap Debian + python3, numpy, scipy), built here, never pulled.
images: services
	infra/images.sh

migrate: services
	cargo run --quiet -p mecapy-shared --bin migrate

up: migrate images serve
	@infra/dev-hints.sh "$(API)"

serve:
	@infra/serve.sh start $(WATCH_PORT)

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

# Test databases are named mecapy_test_<uuid>; drop the ones earlier runs left behind.
clean-test-dbs:
	@psql -qAt "$(DATABASE_URL)" -c "SELECT datname FROM pg_database WHERE datname LIKE 'mecapy\_test\_%'" \
	  | while read -r db; do psql -q "$(DATABASE_URL)" -c "DROP DATABASE IF EXISTS $$db WITH (FORCE)"; done

test: services images lint clean-test-dbs
	cargo test --workspace --all-features -- --test-threads 8

release:
	cargo build --release -p login -p callback -p upload -p compute-submit -p compute-dispatch

bench: services images release
	RUST_LOG=warn cargo run --release --quiet -p mecapy-bench
