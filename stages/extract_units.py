"""``dv extract-units``: HuBERT (or MFCC) features for a manifest, and units when given k-means.

Utterances are read in order of decreasing duration so that a batch holds similar lengths (little
padding), decoded in a background thread while the model runs, cut into ``chunk_seconds`` pieces
when longer (on frame boundaries, so a long file yields exactly the frames it would in one piece,
apart from the attention context), and padded into batches of at most ``batch_seconds`` of audio.
Padding never changes the features (see :mod:`dvcli.features.hubert`).

Files that fail to decode mid-run are reported, skipped and counted (``skipped.tsv``); the stage
fails only when nothing could be extracted. ``shard``/``num_shards`` split the manifest into
contiguous parts for job arrays; ``dv cluster`` reads all the parts' folders together.

Output folder: ``feats-*.npy`` + ``index.tsv`` (see :mod:`dvcli.features.store`), with ``kmeans``
also ``units.tsv`` (and ``units.dedup.tsv`` + ``durations.tsv`` with ``dedup``), ``meta.json``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.progress import ProgressColumn, Task
from rich.text import Text

from dvcli.audio import load_audio
from dvcli.config import StageConfig
from dvcli.errors import UserError
from dvcli.features import HOP, WINDOW, FeatureExtractor
from dvcli.features.store import FeatureWriter
from dvcli.logs import progress
from dvcli.manifest import Utterance, read_manifest
from dvcli.outputs import add_meta, stage_output
from dvcli.runtime import autocast, resolve_device, resolve_precision, reuse_freed_memory
from dvcli.units.centroid_files import check_same_features, load_centroids
from dvcli.units.kmeans import assign
from dvcli.units.sequences import write_unit_files

log = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class ExtractUnitsConfig(StageConfig):
    """Settings of ``dv extract-units``."""

    manifest: Path  # manifest.tsv (or its folder)
    out: Path  # output folder: feature shards + index.tsv (+ units.tsv with kmeans)
    features: Literal["hubert", "mfcc", "whisper"] = "hubert"  # HuBERT layer, MFCC + deltas, or Whisper encoder
    checkpoint: Path | None = (
        None  # HuBERT: fairseq .pt or HF folder (required); whisper: a CTranslate2 folder (default: packaged base)
    )
    whisper_window: Literal["trim", "full"] = "trim"  # whisper: encode each piece at its own length, or pad it to 30 s
    layer: int = 6  # HuBERT transformer layer, 1-based (fairseq's output_layer)
    normalize: bool | None = None  # layer-norm each waveform first; None = as the checkpoint says
    kmeans: Path | None = None  # label frames with these centroids (cluster folder, .npy or km.bin)
    dedup: bool = False  # with kmeans: also write units.dedup.tsv + durations.tsv
    keep_features: bool = True  # with kmeans: false = write units only
    shard: int = 0  # this job's part of the manifest (0-based)
    num_shards: int = 1  # parts the manifest is split into
    batch_seconds: float = 60.0  # padded audio per batch (seconds)
    # utterances per batch at most; None = by device: 1 on CPU (padded batches ran at 0.77x of one file at a
    # time there, bench/extract_units.py), 32 on CUDA
    max_batch: int | None = None
    chunk_seconds: float = 100.0  # cut longer files into pieces this long (fairseq's 1.6M samples)
    shard_frames: int = 1_000_000  # frames per feature file
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    prefetch: int = 16  # files decoded ahead of the model, in a background thread


@dataclasses.dataclass
class ExtractUnitsResult:
    """What ``dv extract-units`` wrote and counted."""

    out: Path
    kind: str
    utterances: int
    frames: int
    hours: float
    seconds: float
    skipped: list[tuple[str, str]]  # (id, reason)
    units: bool

    def summary(self) -> dict[str, object]:
        """Rows for the end-of-stage table."""
        return {
            "output": self.out,
            "features": self.kind,
            "utterances": self.utterances,
            "frames": self.frames,
            "audio hours": f"{self.hours:.3f}",
            "speed": f"{self.hours * 3600 / max(self.seconds, 1e-9):.1f} s of audio per s",
            "units": "units.tsv" if self.units else "-",
            "skipped": len(self.skipped),
        }


class _AudioRate(ProgressColumn):
    """Audio hours processed per wall-clock second (the bar counts seconds of audio)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if not elapsed:
            return Text("")
        return Text(f"{task.completed / 3600 / elapsed:.4f} audio-h/s", style="progress.data.speed")


def select_shard(utterances: list[Utterance], shard: int, num_shards: int) -> list[Utterance]:
    """The ``shard``-th of ``num_shards`` contiguous parts of the manifest.

    Raises:
        UserError: ``shard`` outside ``0 .. num_shards-1``.
    """
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise UserError(f"--shard {shard} --num-shards {num_shards}: need 0 <= shard < num-shards")
    n = len(utterances)
    return utterances[shard * n // num_shards : (shard + 1) * n // num_shards]


def pieces(wav: torch.Tensor, chunk_frames: int, hop: int = HOP, window: int = WINDOW) -> list[torch.Tensor]:
    """Cut ``(T,)`` audio into pieces of ``chunk_frames`` frames whose frames add up to the whole file's.

    Piece ``i`` starts at sample ``i * chunk_frames * hop`` and carries ``window - hop`` extra samples,
    so it yields exactly frames ``i * chunk_frames ...`` of the file.
    """
    step = chunk_frames * hop
    out = []
    start = 0
    while start == 0 or start + window <= len(wav):
        out.append(wav[start : start + step + window - hop])
        start += step
    return out


def build_extractor(config: ExtractUnitsConfig) -> FeatureExtractor:
    """The feature extractor a config asks for.

    Raises:
        UserError: HuBERT without a checkpoint, or a checkpoint that does not load.
    """
    if config.features == "mfcc":
        from dvcli.features.mfcc import MfccFeatures

        return MfccFeatures()
    if config.features == "whisper":
        from dvcli.features.whisper import WhisperEncoderFeatures

        return WhisperEncoderFeatures(config.checkpoint, resolve_device(config.device), window=config.whisper_window)
    if config.checkpoint is None:
        raise UserError(
            "--features hubert needs --checkpoint (a fairseq .pt or a Hugging Face folder), or use --features mfcc"
        )
    from dvcli.features.hubert import load_hubert

    return load_hubert(config.checkpoint, config.layer, normalize=config.normalize)


def _load(utt: Utterance, extractor: FeatureExtractor) -> torch.Tensor | str:
    """Decoded, resampled, preprocessed audio, or the reason it could not be read."""
    try:
        wav = load_audio(utt.audio, extractor.sample_rate)
    except UserError as err:
        return str(err).split(": ", 1)[-1]
    if len(wav) < WINDOW:
        return f"shorter than {1000 * WINDOW / extractor.sample_rate:.0f} ms (no frame)"
    return extractor.preprocess(wav)


def _decoded(
    utterances: list[Utterance], extractor: FeatureExtractor, ahead: int
) -> Iterator[tuple[Utterance, torch.Tensor | str]]:
    """Yield ``(utterance, audio or failure reason)`` in order, decoding ``ahead`` files in a thread."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        queue: collections.deque = collections.deque()
        items = iter(utterances)
        for utt in items:
            queue.append((utt, pool.submit(_load, utt, extractor)))
            if len(queue) > ahead:
                break
        while queue:
            utt, future = queue.popleft()
            nxt = next(items, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(_load, nxt, extractor)))
            yield utt, future.result()


def _check(config: ExtractUnitsConfig) -> list[Utterance]:
    """The settings make sense and this shard has utterances; those utterances.

    Raises:
        UserError: non-positive batch or chunk sizes, nothing to write, an empty shard.
    """
    if (
        config.batch_seconds <= 0
        or config.chunk_seconds <= 0
        or (config.max_batch is not None and config.max_batch < 1)
    ):
        raise UserError("batch_seconds, chunk_seconds and max_batch must be positive")
    if config.kmeans is None and not config.keep_features:
        raise UserError("keep_features=false without --kmeans would write nothing")
    utterances = select_shard(read_manifest(config.manifest), config.shard, config.num_shards)
    if not utterances:
        raise UserError(f"{config.manifest}: shard {config.shard} of {config.num_shards} holds no utterances")
    return utterances


def _centroids_for(config: ExtractUnitsConfig, extractor: FeatureExtractor, info: dict[str, Any]) -> np.ndarray | None:
    """``--kmeans``'s centroids ``(k, dim)``, checked against the extractor's features; None without it.

    Raises:
        UserError: centroids of another dimension, or k-means trained on other features.
    """
    if config.kmeans is None:
        return None
    centroids, trained_on = load_centroids(config.kmeans)
    if centroids.shape[1] != extractor.dim:
        raise UserError(
            f"{config.kmeans}: centroids have dimension {centroids.shape[1]}, the {info['kind']} "
            f"features {extractor.dim} (k-means trained on other features?)"
        )
    check_same_features(config.kmeans, trained_on, info)
    return centroids


def default_max_batch(device: torch.device) -> int:
    """Utterances per batch when ``max_batch`` is not set: 32 on CUDA, 1 elsewhere.

    On CPU a padded batch computes its padding and gains nothing from batching (the matrix products
    are already large): measured 0.77x the throughput of one file at a time (bench/extract_units.py).
    """
    return 32 if device.type == "cuda" else 1


def run(config: ExtractUnitsConfig) -> ExtractUnitsResult:
    """Extract features (and units) for the utterances of ``config.manifest`` in this shard.

    Raises:
        UserError: unreadable manifest or checkpoint, centroids of another dimension, every file
            unreadable, bad settings.
    """
    utterances = _check(config)
    device = resolve_device(config.device)
    if device.type == "cpu":
        reuse_freed_memory()
    extractor = build_extractor(config)
    if isinstance(extractor, torch.nn.Module):
        extractor = extractor.to(device)
    info = extractor.describe()
    centroids = _centroids_for(config, extractor, info)
    precision = resolve_precision(config.precision, device)

    order = sorted(utterances, key=lambda u: -u.duration)  # long first: similar lengths share a batch
    chunk_frames = max(1, round(config.chunk_seconds * extractor.frame_rate))
    chunk_frames = min(chunk_frames, getattr(extractor, "max_frames", chunk_frames))  # Whisper reads <= 30 s
    budget = int(config.batch_seconds * extractor.sample_rate)
    max_batch = default_max_batch(device) if config.max_batch is None else config.max_batch
    out = Path(config.out)
    skipped: list[tuple[str, str]] = []
    units: dict[str, np.ndarray] = {}
    frames_done = 0
    start = time.perf_counter()
    inputs: dict[str, Any] = {"manifest": Path(config.manifest).resolve()}
    if config.checkpoint is not None and config.features in ("hubert", "whisper"):
        inputs["checkpoint"] = Path(config.checkpoint).resolve()
    if config.kmeans is not None:
        inputs["kmeans"] = Path(config.kmeans).resolve()

    with stage_output(out, stage="extract-units", config=config, inputs=inputs) as tmp:
        writer = FeatureWriter(tmp, extractor.dim, shard_frames=config.shard_frames) if config.keep_features else None
        parts: dict[str, list[np.ndarray | None]] = {}
        batch: list[tuple[str, int, torch.Tensor]] = []

        def finish(uid: str) -> None:
            nonlocal frames_done
            feats = np.concatenate(parts.pop(uid))  # type: ignore[arg-type]
            frames_done += len(feats)
            if writer is not None:
                writer.add(uid, feats)
            if centroids is not None:
                units[uid] = assign(feats.astype(np.float32), centroids, device=device)[0]

        def run_batch() -> None:
            longest = max(len(w) for _, _, w in batch)
            wavs = torch.zeros(len(batch), longest)
            for row, (_, _, wav) in enumerate(batch):
                wavs[row, : len(wav)] = wav
            lengths = torch.tensor([len(w) for _, _, w in batch])
            with autocast(precision, device):
                feats, frames = extractor(wavs.to(device), lengths)
            # float16 on disk; units are computed from the same rounded values that `dv cluster` reads.
            feats = feats.float().cpu().numpy().astype(np.float16)
            for row, (uid, index, _) in enumerate(batch):
                parts[uid][index] = feats[row, : int(frames[row])]
                if all(p is not None for p in parts[uid]):
                    finish(uid)
            batch.clear()

        try:
            with progress(_AudioRate()) as bar:
                task = bar.add_task("extracting", total=sum(u.duration for u in order))
                for utt, audio in _decoded(order, extractor, config.prefetch):
                    if isinstance(audio, str):
                        log.warning("skipped %s (%s): %s", utt.id, utt.audio, audio)
                        skipped.append((utt.id, f"{utt.audio}: {audio}"))
                        bar.advance(task, utt.duration)
                        continue
                    chunks = pieces(audio, chunk_frames)
                    parts[utt.id] = [None] * len(chunks)
                    for index, piece in enumerate(chunks):
                        longest = max([len(piece)] + [len(w) for _, _, w in batch])
                        if batch and (longest * (len(batch) + 1) > budget or len(batch) >= max_batch):
                            run_batch()
                        batch.append((utt.id, index, piece))
                    bar.advance(task, utt.duration)
                if batch:
                    run_batch()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        skipped_ids = {uid for uid, _ in skipped}
        done = [u.id for u in utterances if u.id not in skipped_ids]
        if not done:
            raise UserError(
                f"{config.manifest}: none of the {len(utterances)} files could be read (first: {skipped[0][1]})"
            )
        if writer is not None:
            writer.close(order=done)
        files: list[str] = []
        if centroids is not None:
            files = write_unit_files(tmp, {uid: units[uid] for uid in done}, dedup=config.dedup)
        if skipped:
            (tmp / "skipped.tsv").write_text("id\treason\n" + "".join(f"{i}\t{r}\n" for i, r in skipped), "utf-8")
        seconds = time.perf_counter() - start
        hours = sum(u.duration for u in utterances if u.id not in skipped_ids) / 3600
        add_meta(
            tmp,
            **info,
            dtype="float16",
            features_saved=config.keep_features,
            k=int(len(centroids)) if centroids is not None else None,
            units_files=files,
            utterances=len(done),
            frames=frames_done,
            hours=round(hours, 6),
            skipped=len(skipped),
            shard=config.shard,
            num_shards=config.num_shards,
            seconds=round(seconds, 3),
            audio_seconds_per_second=round(hours * 3600 / max(seconds, 1e-9), 3),
        )
    return ExtractUnitsResult(out, info["kind"], len(done), frames_done, hours, seconds, skipped, centroids is not None)
