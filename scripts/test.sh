#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (real etcd, sshd, strace
# from Debian packages, moto from PyPI into a virtualenv, idempotently), builds, and runs every
# test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# Two cores: keep the test binaries from starving each other's real-time waits.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
# The code stays clean: formatting and every clippy lint (including the determinism rules of
# clippy.toml) fail the run.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
