#!/bin/sh
# Regenerate the image's hash-pinned requirement files from pyproject.toml (through uv.lock, which
# stays local). Run after any change to the dependencies; tests/foundation/test_image.py fails
# while these files are out of step with pyproject.toml.
set -eu
cd "$(dirname "$0")/.."
uv lock -q
uv export -q --frozen --no-dev --no-emit-project --no-header --format requirements-txt -o requirements.lock.txt
uv export -q --frozen --only-group build --no-emit-project --no-header --format requirements-txt -o requirements.build.txt
