#!/usr/bin/env bash
# The integration suite against Apache Kafka and PostgreSQL containers (testcontainers).
# Without a Docker engine it says so and succeeds: the embedded suite (`make test`) is the gate.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "test-containers: no Docker engine here; skipped (the embedded suite, make test, is the CI gate)"
  exit 0
fi
# testcontainers comes with the dev lock (the `containers` extra).
CRM_TEST_BACKEND=containers .venv/bin/python -m pytest tests/integration tests/e2e -q
