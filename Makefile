# The README's two commands: `make demo` and `make test`. Each does its own set-up.
SHELL := /bin/bash
export EPHEMERA_MOTO_SERVER := $(CURDIR)/.venv/bin/moto_server

.PHONY: test demo peers build lint bench

## Virtualenv with pinned moto[server] and aiosmtpd; Debian's prometheus and python3-venv if missing.
peers:
	@scripts/setup-peers.sh

## The whole test suite: unit, integration (against moto), CLI, rules test cases; then each
## benchmark once, tiny (so a bench that no longer runs fails here, not at measuring time).
test: peers
	scripts/with-postgres.sh cargo test --locked
	scripts/with-postgres.sh cargo test --locked --benches

## Seeds an emulated AWS estate, runs the daemon (unarmed) on it: a pass, spend, the deletion plan;
## keeps serving until Ctrl-C (no AWS account needed).
demo: peers
	cargo build --locked
	@scripts/demo.sh

build:
	cargo build --locked --release

lint:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

## Benchmarks (release build): lease acquire+release over HTTP with 64 clients.
bench:
	cargo bench --locked
