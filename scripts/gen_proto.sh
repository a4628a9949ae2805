#!/usr/bin/env bash
# Regenerate the Python modules of CoreOrchestrator's gRPC proto (committed beside it).
# Run from anywhere; needs grpcio-tools (the `dev` extra).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
  deployments/core/proto/aisys_core.proto
