#!/usr/bin/env bash
# DINO-VITS on VCTK: the LibriTTS recipe (examples/libritts/run.sh, same stages, configs and options)
# with the VCTK 0.92 folder as the corpus. 8 of its 110 speakers are held out for the zero-shot tests.
#
#   VCTK=/data/VCTK-Corpus-0.92 bash examples/vctk/run.sh [--stage N] [--stop-stage N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CORPUS=${VCTK:-/data/VCTK-Corpus-0.92} DIR=${DIR:-exp/vctk} exec bash "$here/../libritts/run.sh" "$@"
