#!/usr/bin/env bash
# Regenerate the dv toy speech corpus (synthetic, multi-speaker, English).
#
# Usage:
#   bash examples/toy/make_corpus.sh [OUTDIR]   build into OUTDIR (default: this script's folder)
#   bash examples/toy/make_corpus.sh --check    rebuild into a temporary folder and compare
#                                               with SHA256SUMS (nothing is written here)
#   bash examples/toy/make_corpus.sh --sentences FILE OUTDIR
#                                               the same voices reading FILE's sentences (one per
#                                               line, at most 999), e.g. make_sentences.py's output
#
# Every utterance is: synthesizer -> WAV -> sox (repeatable mode, no dither:
# resample to 16 kHz mono 16-bit, trim silence, normalise) -> flac (fixed settings).
# With the same package versions (see README.md) the output is identical byte
# for byte from run to run.
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SENTENCES="$HERE/sentences.txt"
SUMS_FILE="SHA256SUMS"
APT_LINE="apt-get install -y flite espeak-ng sox libsox-fmt-all flac"

# Peak level after normalisation, in dBFS.
LEVEL_DB=-6

# speaker | split | gender | synthesizer and its options | extra sox effects
# (The synthesizer is "flite" or "espeak-ng"; text comes from a file, so the
# options must not contain -t/-f/-o/-w.)
SPEAKERS=(
  "flite_slt|train|f|flite -voice slt|"
  "flite_awb|train|m|flite -voice awb|"
  "flite_rms|heldout|m|flite -voice rms|"
  "flite_kal16|train|m|flite -voice kal16|"
  "espeak_us_m3|train|m|espeak-ng -v en-us+m3 -p 35 -s 160|"
  "espeak_wm_f2|train|f|espeak-ng -v en-gb-x-gbcwmd+f2 -p 60 -s 175|"
  "espeak_us_f4|heldout|f|espeak-ng -v en-us+f4 -p 55 -s 170|"
  "espeak_sc_m1|train|m|espeak-ng -v en-gb-scotland+m1 -p 45 -s 170|"
  "espeak_rp_f3|train|f|espeak-ng -v en-gb-x-rp+f3 -p 80 -s 185|"
  "espeak_nyc_m7|train|m|espeak-ng -v en-us-nyc+m7 -p 20 -s 155|"
)

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

die() { echo "make_corpus.sh: $*" >&2; exit 1; }

check_tools() {
  local missing=() t
  for t in flite espeak-ng sox flac sha256sum mktemp; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if ((${#missing[@]})); then
    echo "make_corpus.sh: missing tools: ${missing[*]}" >&2
    echo "Install them (Debian/Ubuntu) with:" >&2
    echo "  $APT_LINE" >&2
    exit 2
  fi
  local v voices
  voices=" $(flite -lv | sed 's/^Voices available://') "
  for v in slt awb rms kal16; do
    [[ "$voices" == *" $v "* ]] || die "flite has no built-in voice '$v' (need Debian's flite package: $APT_LINE)"
  done
}

# Read sentences.txt: one sentence per line; blank lines are ignored, CRs stripped.
read_sentences() {
  [[ -f "$SENTENCES" ]] || die "no $SENTENCES"
  SENTS=()
  local line
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line//$'\r'/}"
    [[ -n "${line//[[:space:]]/}" ]] && SENTS+=("$line")
  done <"$SENTENCES"
  ((${#SENTS[@]})) || die "$SENTENCES has no sentences"
  ((${#SENTS[@]} <= 999)) || die "at most 999 sentences"
}

# build DIR: write every speaker folder, speakers.tsv and SHA256SUMS into DIR.
build() {
  local dir="$1" scratch="$1/.scratch"
  mkdir -p "$scratch"
  printf 'speaker\tvoice\tsplit\tgender\n' >"$dir/speakers.tsv"
  local entry spk split gender cmd fx argv i n base raw wav desc
  for entry in "${SPEAKERS[@]}"; do
    IFS='|' read -r spk split gender cmd fx <<<"$entry"
    read -r -a argv <<<"$cmd"
    desc="$cmd"
    [[ -n "$fx" ]] && desc="$cmd | sox $fx"
    printf '%s\t%s\t%s\t%s\n' "$spk" "$desc" "$split" "$gender" >>"$dir/speakers.tsv"
    mkdir -p "$dir/$spk"
    echo "  $spk: $desc" >&2
    for ((i = 0; i < ${#SENTS[@]}; i++)); do
      printf -v n '%03d' $((i + 1))
      base="$dir/$spk/${spk}_$n"
      printf '%s\n' "${SENTS[$i]}" >"$base.txt"
      raw="$scratch/raw.wav"
      wav="$scratch/out.wav"
      case "${argv[0]}" in
        flite) "${argv[@]}" -f "$base.txt" -o "$raw" ;;
        espeak-ng) "${argv[@]}" -f "$base.txt" -w "$raw" ;;
        *) die "unknown synthesizer '${argv[0]}' for $spk" ;;
      esac
      # shellcheck disable=SC2086  # $fx is a list of sox effect words
      sox -R -D "$raw" -r 16000 -c 1 -b 16 -e signed-integer "$wav" \
        remix - gain -n -3 $fx rate -v 16000 \
        gain -n -1 \
        silence 1 0.02 0.1% reverse silence 1 0.02 0.1% reverse \
        pad 0.05 0.05 \
        gain -n "$LEVEL_DB"
      flac --silent --force --best --blocksize=1024 --exhaustive-model-search --no-padding --no-seektable -o "$base.flac" "$wav"
    done
  done
  rm -rf "$scratch"
  (cd "$dir" && find . -mindepth 2 -type f \( -name '*.flac' -o -name '*.txt' \) | sed 's|^\./||' | sort |
    { cat; echo speakers.tsv; } | xargs -d '\n' sha256sum) >"$dir/$SUMS_FILE"
}

mode=build
OUTDIR="$HERE"
if [[ "${1:-}" == --sentences ]]; then
  [[ -n "${2:-}" && -n "${3:-}" ]] || { usage >&2; exit 1; }
  [[ -f "$2" ]] || die "--sentences $2: no such file"
  SENTENCES="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
  [[ "$(cd "$(dirname "$3")" 2>/dev/null && pwd)/$(basename "$3")" != "$HERE" ]] || die "write other sentences elsewhere, not over the shipped corpus"
  shift 2
fi
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --check) mode=check ;;
  "") ;;
  -*) usage >&2; exit 1 ;;
  *) OUTDIR="$1" ;;
esac

check_tools
read_sentences

TMP=""
cleanup() { if [[ -n "$TMP" ]]; then rm -rf "$TMP"; fi; }
trap cleanup EXIT

if [[ $mode == check ]]; then
  [[ -f "$HERE/$SUMS_FILE" ]] || die "no $HERE/$SUMS_FILE to check against"
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/toy-corpus-check.XXXXXX")"
  echo "Regenerating ${#SPEAKERS[@]} speakers x ${#SENTS[@]} sentences in $TMP ..." >&2
  build "$TMP"
  status=0
  if diff -u "$HERE/$SUMS_FILE" "$TMP/$SUMS_FILE"; then
    echo "OK: regenerated corpus matches $SUMS_FILE ($(wc -l <"$TMP/$SUMS_FILE") files)"
  else
    echo "FAIL: regenerated corpus differs from $SUMS_FILE (compare your package versions with README.md)" >&2
    status=1
  fi
  # Also verify the files shipped next to this script.
  if (cd "$HERE" && sha256sum --check --quiet "$SUMS_FILE"); then
    echo "OK: shipped files in $HERE match $SUMS_FILE"
  else
    echo "FAIL: shipped files in $HERE differ from $SUMS_FILE" >&2
    status=1
  fi
  exit "$status"
fi

mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
# Build next to the destination (same file system), then move into place.
TMP="$(mktemp -d "$OUTDIR/.corpus.tmp-XXXXXX")"
echo "Generating ${#SPEAKERS[@]} speakers x ${#SENTS[@]} sentences into $OUTDIR ..." >&2
build "$TMP"
for entry in "${SPEAKERS[@]}"; do
  spk="${entry%%|*}"
  rm -rf "${OUTDIR:?}/$spk"
  mv "$TMP/$spk" "$OUTDIR/$spk"
done
mv -f "$TMP/speakers.tsv" "$OUTDIR/speakers.tsv"
mv -f "$TMP/$SUMS_FILE" "$OUTDIR/$SUMS_FILE"
rmdir "$TMP" && TMP=""
echo "Done: $(grep -c '\.flac$' "$OUTDIR/$SUMS_FILE") utterances, $(du -sb "$OUTDIR" | cut -f1) bytes in $OUTDIR" >&2
