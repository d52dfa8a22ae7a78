#!/usr/bin/env bash
# The Lennard-Jones argon Green-Kubo validation (docs/results.md): exact-LJ MD in two cells and
# at two temperatures, then the independent routes to kappa for each. About an hour on 2 cores;
# resumable (finished NVE runs are reused). Usage: bash validation/run_lj_campaign.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-results/validation/lj_argon}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
$PY validation/lj_argon_md.py --repeat 3 --temperature 56 --runs 12 --ps 40 --out "$OUT/N108_T56"
$PY validation/lj_argon_md.py --repeat 3 --temperature 25 --runs 6 --ps 60 --out "$OUT/N108_T25"
$PY validation/lj_argon_md.py --repeat 4 --temperature 56 --runs 5 --ps 40 --out "$OUT/N256_T56"
$PY validation/lj_argon.py "$OUT/N108_T56"
$PY validation/lj_argon.py "$OUT/N108_T25"
$PY validation/lj_argon.py "$OUT/N256_T56" --no-phono3py
