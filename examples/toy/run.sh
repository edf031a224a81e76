#!/usr/bin/env bash
# The toy corpus end to end as plain dv commands: what `dv demo` runs, in numbered stages to copy.
#
#   bash examples/toy/run.sh                            # every stage, into exp/toy
#   bash examples/toy/run.sh --stage 4 --stop-stage 4   # only joint training
#   bash examples/toy/run.sh --dir /tmp/toy             # somewhere else
#
# Needs `dv` on PATH (`make install`, then `source .venv/bin/activate`). About 10 CPU minutes.
set -euo pipefail

dir=exp/toy
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../parse_stages.sh"

# 0. Corpus -> manifest (2 held-out speakers for zero-shot tests, from examples/toy/speakers.tsv).
if run 0; then dv prepare "$here" -o "$dir/data"; fi

# 1-2. Content units: weight-free MFCC features (real data: HuBERT, see examples/libritts), 100 clusters.
if run 1; then dv extract-units "$dir/data" -o "$dir/feats" --features mfcc; fi
if run 2; then dv cluster "$dir/feats" -o "$dir/units" --k 100 --sample 1.0 --dedup; fi

# 3. Speaker encoder: a tiny CAM++ pretrained with AAM-Softmax on noisy and reverberant crops.
if run 3; then
  dv pretrain-speaker "$dir/data/manifest.tsv" -o "$dir/speaker" --config "$here/../pretrain_speaker_tiny.yaml"
fi

# 4. Joint training: unit-input VITS + CAM++ under the DINO loss (tiny configuration).
if run 4; then
  dv train-joint "$dir/data/manifest.tsv" --units "$dir/units" --speaker "$dir/speaker" -o "$dir/joint" \
    --config "$here/train_joint_tiny.yaml"
fi

# 5. Text-to-unit: a tiny mBART from text to the same units.
if run 5; then dv train-t2u "$dir/data/manifest.tsv" --units "$dir/units" -o "$dir/t2u" --config "$here/train_t2u_tiny.yaml"; fi

# 6. Zero-shot test list: held-out speakers' references, clean and at 0 dB.
if run 6; then dv evaluate refs "$dir/data" --split heldout --per-speaker 2 --snrs 0 -o "$dir/refs"; fi

# 7. Synthesis: every test sentence from its clean and its noisy reference.
if run 7; then dv synthesize --model "$dir/joint" --t2u "$dir/t2u" --batch "$dir/refs/batch.tsv" -o "$dir/synth"; fi

# 8. Evaluation: CER, SECS and DNSMOS, clean vs noisy references, against the real recordings.
if run 8; then
  dv evaluate run "$dir/synth" --ground-truth "$dir/data/manifest.tsv" --split heldout -o "$dir/report"
  cat "$dir/report/report.md"
fi

# 9-15. Towards a voice that speaks: the same ten voices reading 720 new sentences (never the 27
# test sentences above), speaker-independent Whisper-encoder units, longer training. Needs flite,
# espeak-ng, sox and flac (make_corpus.sh names the apt line) and the eval extra (Whisper base).
speak="$dir/speak"
# 9. The larger corpus: 7200 utterances, about 5 h of speech, ~10 CPU minutes.
if run 9; then
  python3 "$here/make_sentences.py" 720 --exclude "$here/sentences.txt" -o "$speak/sentences.txt"
  bash "$here/make_corpus.sh" --sentences "$speak/sentences.txt" "$speak/corpus"
fi
if run 10; then dv prepare "$speak/corpus" -o "$speak/data"; fi
# 11-12. Whisper base encoder features (bench/content_units.py: units that follow the words, not the voice).
if run 11; then dv extract-units "$speak/data" -o "$speak/feats" --features whisper; fi
if run 12; then dv cluster "$speak/feats" -o "$speak/units" --k 100 --dedup; fi
# 13. Text-to-unit on all eight training voices' readings.
if run 13; then
  dv train-t2u "$speak/data/manifest.tsv" --units "$speak/units" -o "$speak/t2u" --config "$here/train_t2u_speak.yaml"
fi
# 14. Joint training (long: rerun with --resume and more steps to go on; bench/resynthesis.py scores
# a checkpoint's resynthesis of training utterances with Whisper).
if run 14; then
  dv train-joint "$speak/data/manifest.tsv" --units "$speak/units" --speaker "$dir/speaker" -o "$speak/joint" \
    --config "$here/train_joint_speak.yaml"
fi
# 15. Clone the held-out voices saying the 27 test sentences (outside all training text), clean and 0 dB.
if run 15; then
  dv synthesize --model "$speak/joint" --t2u "$speak/t2u" --batch "$dir/refs/batch.tsv" -o "$speak/synth"
  dv evaluate run "$speak/synth" --ground-truth "$dir/data/manifest.tsv" --split heldout -o "$speak/report"
  cat "$speak/report/report.md"
fi
