#!/usr/bin/env bash
# DINO-VITS on LibriTTS, the paper's setup, for a machine with real data and 2 GPUs.
#
#   bash examples/libritts/run.sh                           # every stage
#   bash examples/libritts/run.sh --stage 4 --stop-stage 4  # only joint training
#
# Set the paths below (or export them). Everything loads from local files; nothing is downloaded.
#   CORPUS     the corpus folder (LibriTTS train-clean-100 here; examples/vctk/run.sh sets VCTK)
#   HUBERT     hubert_base_ls960.pt (fairseq) or a Hugging Face HuBERT folder
#   CAMPPLUS   3D-Speaker campplus_*.bin to start the speaker encoder from ("" = from scratch)
#   MUSAN      MUSAN's noise folder; RIRS: RIRS_NOISES/simulated_rirs (speaker augmentation)
#   MBART      mbart-large-cc25 folder (text-to-unit initialisation, 610M parameters)
#   NOISE      background noise for the noisy test references (CHiME-3 backgrounds, or MUSAN noise)
#   WHISPER    the recogniser of the transcript arms (the paper: Whisper medium, as a Hugging Face or
#              CTranslate2 folder; auto = the packaged Whisper base)
# Stage 8 trains the paper's ablation arms (AAM instead of DINO, no reference augmentation, frozen
# encoder) and the other self-supervised sidecars (SimCLR, MoCo, BYOL, VICReg); stages 9-12 the
# paper's baselines (Table 1: a denoiser front-end, a frozen BYOL-A encoder; Table 4: VITS on Whisper
# transcripts, and both content kinds trained on a 60% clean / 40% noisy copy of the corpus); stage 13
# scores every system on the same clean/noisy test list in one report.
set -euo pipefail

CORPUS=${CORPUS:-/data/LibriTTS/train-clean-100}
HUBERT=${HUBERT:-/models/hubert_base_ls960.pt}
CAMPPLUS=${CAMPPLUS:-/models/campplus_voxceleb.bin}
MUSAN=${MUSAN:-/data/musan/noise}
RIRS=${RIRS:-/data/RIRS_NOISES/simulated_rirs}
MBART=${MBART:-/models/mbart-large-cc25}
NOISE=${NOISE:-/data/musan/noise}
WHISPER=${WHISPER:-auto}
GPUS=${GPUS:-2}
SHARDS=${SHARDS:-4}

dir=${DIR:-exp/libritts}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../parse_stages.sh"

# 0. Manifest; 8 speakers held out for the zero-shot tests, utterances over 15 s left out.
if run 0; then dv prepare "$CORPUS" -o "$dir/data" --speakers-heldout 8 --max-duration 15; fi

# 1. HuBERT-Base layer-6 features, in shards (each line can be a job of an array on a cluster).
if run 1; then
  for i in $(seq 0 $((SHARDS - 1))); do
    dv extract-units "$dir/data" -o "$dir/feats/$i" --checkpoint "$HUBERT" --layer 6 --shard "$i" --num-shards "$SHARDS"
  done
fi

# 2. 1000 units (k-means on 10% of the frames), frame-level and deduplicated.
if run 2; then dv cluster "$dir"/feats/* -o "$dir/units" --config "$here/cluster.yaml"; fi

# 3. CAM++ with AAM-Softmax, MUSAN noise and RIRS reverberation (from a VoxCeleb checkpoint).
if run 3; then
  init=()
  [ -n "$CAMPPLUS" ] && init=(--set "init=$CAMPPLUS")
  dv pretrain-speaker "$dir/data/manifest.tsv" -o "$dir/speaker" --config "$here/pretrain_speaker.yaml" \
    "${init[@]}" --set "augment.noise_dir=$MUSAN" --set "augment.rir_dir=$RIRS"
fi

# 4. Joint training: VITS + CAM++ + DINO, batch 80, 95k steps with only the encoder's last layer
#    trainable, then 175k with all of it (5 days on 2 RTX 3090 in the paper).
if run 4; then
  dv train-joint "$dir/data/manifest.tsv" --units "$dir/units" --speaker "$dir/speaker" -o "$dir/joint-dino" \
    --config "$here/train_joint.yaml" --gpus "$GPUS" --set "augment.noise_dir=$MUSAN" --set "augment.rir_dir=$RIRS"
fi

# 5. Text-to-unit: mbart-large-cc25 fine-tuned from text to the deduplicated units.
if run 5; then
  dv train-t2u "$dir/data/manifest.tsv" --units "$dir/units" -o "$dir/t2u" --init "$MBART" \
    --config "$here/train_t2u.yaml" --gpus "$GPUS"
fi

# 6. The zero-shot test list: 15 sentences per held-out speaker, 3 s references, clean and noisy.
if run 6; then
  dv evaluate refs "$dir/data" --split heldout --per-speaker 15 --ref-seconds 3 --snrs 0,5 --noise "$NOISE" -o "$dir/refs"
fi

# 7. Synthesis with the full system.
if run 7; then
  dv synthesize --model "$dir/joint-dino" --t2u "$dir/t2u" --batch "$dir/refs/batch.tsv" -o "$dir/synth-dino"
fi

# 8. Ablation arms (Table 2 of the paper): AAM-Softmax instead of DINO; AAM without reference
#    augmentation; the YourTTS-style frozen verifier; and the cross-loss ablation (the seed analysis's
#    Experiment 1): SimCLR, MoCo, BYOL and VICReg sidecars in DINO's place. Same data, units and schedule.
arms=(aam aam-noaug frozen simclr moco byol vicreg)
if run 8; then
  for arm in "${arms[@]}"; do
    case $arm in
      aam) flags=(--speaker-loss aam) ;;
      aam-noaug) flags=(--speaker-loss aam --no-ref-augment) ;;
      frozen) flags=(--speaker-loss none --freeze-speaker) ;;
      simclr | moco | byol | vicreg) flags=(--speaker-loss "$arm") ;;
    esac
    dv train-joint "$dir/data/manifest.tsv" --units "$dir/units" --speaker "$dir/speaker" -o "$dir/joint-$arm" \
      --config "$here/train_joint.yaml" --gpus "$GPUS" "${flags[@]}" \
      --set "augment.noise_dir=$MUSAN" --set "augment.rir_dir=$RIRS"
    dv synthesize --model "$dir/joint-$arm" --t2u "$dir/t2u" --batch "$dir/refs/batch.tsv" -o "$dir/synth-$arm"
  done
fi

# 9. Table 1, "+ denoiser" (the paper's DEMUCS row): DeepFilterNet3 cleans every reference first.
if run 9; then
  dv synthesize --model "$dir/joint-dino" --t2u "$dir/t2u" --batch "$dir/refs/batch.tsv" --denoise dfn3 -o "$dir/synth-dino-dfn3"
fi

# 10. Table 1, BYOL-A: BYOL-A's generic audio encoder trained on the corpus without speaker labels,
#     frozen under VITS (projected to the speaker-embedding size by PCA).
if run 10; then
  dv pretrain-speaker "$dir/data/manifest.tsv" -o "$dir/byola" --objective byol-a
  dv train-joint "$dir/data/manifest.tsv" --units "$dir/units" --speaker "$dir/byola" --freeze-speaker -o "$dir/joint-byola" \
    --config "$here/train_joint.yaml" --gpus "$GPUS"
  dv synthesize --model "$dir/joint-byola" --t2u "$dir/t2u" --batch "$dir/refs/batch.tsv" -o "$dir/synth-byola"
fi

# 11. Table 4, Whisper-C: the recogniser's transcripts of the clean corpus -> VITS on their phonemes
#     (no text-to-unit model: synthesis reads the text's phonemes).
if run 11; then
  dv transcribe "$dir/data/manifest.tsv" --split train --asr "$WHISPER" -o "$dir/transcripts"
  dv train-joint "$dir/transcripts/manifest.tsv" --content text --speaker "$dir/speaker" -o "$dir/joint-whisper-c" \
    --config "$here/train_joint.yaml" --gpus "$GPUS" --set "augment.noise_dir=$MUSAN" --set "augment.rir_dir=$RIRS"
  dv synthesize --model "$dir/joint-whisper-c" --batch "$dir/refs/batch.tsv" -o "$dir/synth-whisper-c"
fi

# 12. Table 4, the noisy training copy (0 dB MUSAN noise in 40% of the training rows; the held-out
#     speakers are the same and untouched): DINO-VITS-N (its units labelled with stage 2's centroids,
#     so the text-to-unit model fits) and Whisper-N.
if run 12; then
  dv prepare "$CORPUS" -o "$dir/data-noisy" --speakers-heldout 8 --max-duration 15 --noisy-fraction 0.4 --snr 0 --noise "$MUSAN"
  for i in $(seq 0 $((SHARDS - 1))); do
    dv extract-units "$dir/data-noisy" -o "$dir/feats-noisy/$i" --checkpoint "$HUBERT" --layer 6 --shard "$i" --num-shards "$SHARDS"
  done
  dv cluster "$dir"/feats-noisy/* -o "$dir/units-noisy" --kmeans "$dir/units" --dedup
  dv train-joint "$dir/data-noisy/manifest.tsv" --units "$dir/units-noisy" --speaker "$dir/speaker" -o "$dir/joint-dino-n" \
    --config "$here/train_joint.yaml" --gpus "$GPUS" --set "augment.noise_dir=$MUSAN" --set "augment.rir_dir=$RIRS"
  dv synthesize --model "$dir/joint-dino-n" --t2u "$dir/t2u" --batch "$dir/refs/batch.tsv" -o "$dir/synth-dino-n"
  dv transcribe "$dir/data-noisy/manifest.tsv" --split train --asr "$WHISPER" -o "$dir/transcripts-noisy"
  dv train-joint "$dir/transcripts-noisy/manifest.tsv" --content text --speaker "$dir/speaker" -o "$dir/joint-whisper-n" \
    --config "$here/train_joint.yaml" --gpus "$GPUS" --set "augment.noise_dir=$MUSAN" --set "augment.rir_dir=$RIRS"
  dv synthesize --model "$dir/joint-whisper-n" --batch "$dir/refs/batch.tsv" -o "$dir/synth-whisper-n"
fi

# 13. One report: ground truth, DINO-VITS, every arm and every baseline, clean vs noisy references, with 95% CIs;
#    then a listening-test kit for MOS (the paper's headline metric).
if run 13; then
  systems=("$dir/synth-dino")
  for arm in "${arms[@]}"; do systems+=("$dir/synth-$arm"); done
  for baseline in dino-dfn3 byola whisper-c dino-n whisper-n; do systems+=("$dir/synth-$baseline"); done
  dv evaluate run "${systems[@]}" --ground-truth "$dir/data/manifest.tsv" --split heldout -o "$dir/report"
  dv evaluate mos-kit "${systems[@]}" --ground-truth "$dir/data/manifest.tsv" --max-clips 20 -o "$dir/mos-kit"
  cat "$dir/report/report.md"
fi
