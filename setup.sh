#!/usr/bin/env bash
# Sets up everything torchscope needs on a fresh Debian machine, idempotently:
# Graphviz's dot (apt-get), a virtual environment in .venv, torch 2.13.0 first
# (the CPU build; never a CUDA build), then torchscope with its test extra, and
# the native boundary stamp of reimpl/_native.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Graphviz (dot) with apt-get..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
  else
    echo "setup: Graphviz's 'dot' program is missing and cannot be installed here" \
         "(needs root and apt-get). Install it (apt-get install graphviz, brew install graphviz)" \
         "and run this again." >&2
    exit 1
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.torchscope-setup
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing torch 2.13.0 (CPU) and torchscope into .venv..." >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi

# The native boundary stamp (reimpl/_native, a torch C++ extension): built here,
# ahead of time, into ~/.cache/torchscope (about a minute, once per torch and
# source version). Without a compiler this says so and the recorder uses its
# Python hooks instead.
.venv/bin/python -m reimpl._native
# The recorder's column writer in C (tracer/recording/_columns.c): a second with
# the C compiler and Python's headers; without them the Python writer is used.
.venv/bin/python -c "from tracer.recording.native_columns import main; main()"
