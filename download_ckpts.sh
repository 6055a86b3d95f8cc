#!/usr/bin/env bash
# Fetch mdistiller's CIFAR-100 teachers (download_ckpts/cifar_teachers/<name>_vanilla/ckpt_epoch_240.pth)
# and the official WKD cost matrices (wkd_cost_matrix/<dataset>/<teacher>/<name>.pth) into this folder.
# Every file is checked against the SHA-256 in mdistiller/download_manifest.json; partial downloads are
# resumed, network errors retried, verified files skipped (see `python -m mdistiller.download --help`).
#   bash download_ckpts.sh [--teachers-only] [--allow-unverified] [--list] [other mdistiller-download options]
# PYTHON=/path/to/python picks the interpreter (default: .venv/bin/python if present, else python3);
# WKD_REPO_URL=<url> fetches the cost matrices from a mirror of the WKD repository (hashes still apply).
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
args=()
if [ -n "${WKD_REPO_URL:-}" ]; then
  args+=(--mirror "https://github.com/JiamingLv/WKD/raw/main=$WKD_REPO_URL")
fi
exec "$PYTHON" -m mdistiller.download ${args[@]+"${args[@]}"} "$@"
