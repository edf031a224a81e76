"""``dv synthesize``: clone a voice from one reference clip -- text (or units) in, a waveform out.

Three ways in:

- one text (``text`` or ``text_file``) and one reference ``ref`` -> ``out`` is a sound file;
- ``batch``: a TSV with a header and columns ``id``, ``text``, ``ref`` (optional ``condition``; any
  other column, e.g. ``speaker``, ``ref_clean``, ``noise``, ``snr``, is carried through) -> ``out``
  is a folder of ``ID.wav`` files plus ``synth.tsv`` (``id text ref condition out seconds rtf``
  and the carried columns), which ``dv evaluate run`` reads as one system;
- ``units`` instead of text skips text-to-unit: unit ids inline (``"12 873 5"``) or a ``units.tsv``
  (one row for a single text; rows matched by ``id`` in batch mode).

Text is split into sentences (long ones at commas), turned into units by the text-to-unit model
and synthesised in batches for one speaker vector per reference; sentences are joined with short
pauses. Nothing appears at ``out`` unless the whole run succeeds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import re
import sys
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from dvcli.audio import OUTPUT_SUFFIXES, pcm16, save_audio, wav_stream_header
from dvcli.config import StageConfig
from dvcli.denoise import DenoiseName
from dvcli.errors import UserError, path_error
from dvcli.joint.model import JointModel, load_joint
from dvcli.logs import track
from dvcli.manifest import read_units, read_utf8
from dvcli.outputs import add_meta, stage_output
from dvcli.reference import ReferenceOptions, load_reference
from dvcli.runtime import resolve_device, seed_everything
from dvcli.synthesis.pipeline import SynthesisControls, Synthesizer, join_with_pauses, text_chunks
from dvcli.text import normalize_text
from dvcli.units.sequences import deduplicate

if TYPE_CHECKING:
    from dvcli.synthesis.pipeline import Backend
    from dvcli.t2u.inference import TextToUnit

log = logging.getLogger(__name__)

SYNTH_FILE = "synth.tsv"
#: ``out`` (and ``text_file``) meaning standard output (standard input).
STDOUT = "-"
SYNTH_COLUMNS = ["id", "text", "ref", "condition", "out", "seconds", "rtf"]
#: Columns of a batch list that hold paths (resolved against the list's folder, written absolute).
PATH_COLUMNS = ("ref", "ref_clean")


@dataclasses.dataclass(kw_only=True)
class SynthesizeConfig(StageConfig):
    """Settings of ``dv synthesize``."""

    model: Path  # dv train-joint output folder (or its model.pt)
    out: Path  # a .wav/.flac file (one text), "-" (stream to standard output), or a folder (batch)
    t2u: Path | None = None  # dv train-t2u output folder (not needed with units)
    ref: Path | None = None  # reference clip of the voice to clone (one text)
    text: str = ""  # what to say (one text)
    text_file: Path | None = None  # read the text from this UTF-8 file instead
    batch: Path | None = None  # TSV list: id, text, ref[, condition, ...] -> a folder with synth.tsv
    units: str = ""  # unit ids ("12 873 5") or a units.tsv: skip text-to-unit
    noise_scale: float = 0.667  # prior sampling noise (VITS: 0.667)
    noise_scale_w: float = 0.8  # duration sampling noise (VITS: 0.8)
    length_scale: float = 1.0  # > 1 speaks slower
    pause: float = 0.25  # seconds of silence between sentences
    batch_size: int = 8  # sentences decoded together
    max_words: int = 40  # longer sentences are split at commas (or every max_words words)
    beams: int = 5  # text-to-unit beam width
    ref_seconds: float = 0.0  # use at most this much of the reference (after trimming); 0 = all (paper: 3)
    vad: bool = True  # trim non-speech at the reference's edges
    denoise: DenoiseName = "none"  # enhance the reference before it is embedded: none, dfn3 or rnnoise
    backend: Literal["auto", "pytorch", "onnx"] = "auto"  # auto = ONNX Runtime on CPU when installed
    stream_format: Literal["wav", "raw"] = "wav"  # with out "-": a WAV stream, or raw 16-bit PCM (piper's --output-raw)


@dataclasses.dataclass
class SynthesizeResult:
    """What ``dv synthesize`` wrote."""

    out: Path
    clips: int
    seconds: float  # of audio written
    compute_seconds: float
    skipped: list[str]  # batch rows that produced nothing (id: reason)
    backend: str

    @property
    def rtf(self) -> float:
        return self.compute_seconds / self.seconds if self.seconds else float("nan")

    def summary(self) -> dict[str, object]:
        """Rows for the end-of-stage table."""
        return {
            "output": self.out,
            "clips": self.clips,
            "audio": f"{self.seconds:.1f} s",
            "real-time factor": f"{self.rtf:.3f} ({self.backend})",
            "skipped rows": ", ".join(self.skipped) or "-",
        }


@dataclasses.dataclass
class _Item:
    """One clip to make."""

    id: str
    text: str
    ref: Path
    units: list[int] | None  # given units (skip text-to-unit)
    extra: dict[str, str]  # carried-through batch columns (condition included)


def run(config: SynthesizeConfig) -> SynthesizeResult:
    """Synthesize one text or a batch list.

    Raises:
        UserError: missing or mismatched models, a bad reference, empty or unreadable text, a
            malformed batch list; nothing is written at ``out`` then.
    """
    _check_modes(config)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    joint = load_joint(config.model, map_location="cpu").to(device)
    items = _batch_items(config) if config.batch else [_single_item(config)]
    # a model trained on phonemes (train-joint --content text) reads text itself
    needs_t2u = joint.units.content == "units" and any(item.units is None for item in items)
    t2u = _load_t2u(config, joint, device) if needs_t2u else None
    synthesizer = Synthesizer(joint, make_backend(joint, config.backend, device))
    controls = SynthesisControls(
        noise_scale=config.noise_scale,
        noise_scale_w=config.noise_scale_w,
        length_scale=config.length_scale,
        pause=config.pause,
        batch_size=config.batch_size,
    )
    options = ReferenceOptions(max_seconds=config.ref_seconds, vad=config.vad, denoise=config.denoise)
    context = _Context(config, joint, synthesizer, t2u, controls, options)
    if config.batch is None and str(config.out) == STDOUT:
        return _run_stream(context, items[0])
    if config.batch is None:
        return _run_single(context, items[0])
    return _run_batch(context, items)


@dataclasses.dataclass
class _Context:
    config: SynthesizeConfig
    joint: JointModel
    synthesizer: Synthesizer
    t2u: TextToUnit | None
    controls: SynthesisControls
    options: ReferenceOptions
    embeddings: dict[Path, torch.Tensor] = dataclasses.field(default_factory=dict)


def make_backend(joint: JointModel, choice: str, device: torch.device) -> Backend:
    """The backend for ``choice`` (``auto``: ONNX Runtime on CPU when it is installed, else PyTorch)."""
    from dvcli.synthesis.pipeline import TorchBackend

    if choice == "pytorch" or (choice == "auto" and device.type != "cpu"):
        return TorchBackend(joint)
    from dvcli.synthesis.onnx_backend import OnnxBackend, onnxruntime_available

    if not onnxruntime_available():
        if choice == "onnx":
            raise UserError("--backend onnx needs onnxruntime (pip install onnxruntime), or use --backend pytorch")
        return TorchBackend(joint)
    if device.type != "cpu":
        raise UserError("--backend onnx runs on the CPU; use --device cpu (or --backend pytorch on CUDA)")
    return OnnxBackend.cached(joint)


def export(model: Path, folder: Path) -> list[Path]:
    """``dv synthesize --export-onnx``: write the joint model's ONNX graphs to ``folder``.

    Raises:
        UserError: a missing or unusable model.
    """
    from dvcli.synthesis.onnx_backend import export_onnx

    return export_onnx(load_joint(model), folder)


# -- inputs ---------------------------------------------------------------------------------------


def _check_modes(config: SynthesizeConfig) -> None:
    texts = sum(bool(x) for x in (config.text, config.text_file, config.units))
    if config.batch is not None:
        if config.text or config.text_file or config.ref:
            raise UserError("--batch takes the texts and references from its list: drop --text/--text-file/--ref")
        return
    if texts == 0:
        raise UserError("nothing to say: give --text, --text-file, --units or --batch")
    if texts > 1:
        raise UserError("give only one of --text, --text-file and --units")
    if config.ref is None:
        raise UserError("give the voice to clone with --ref clip.wav")
    if str(config.out) == STDOUT:
        return
    if config.out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise path_error(
            config.out,
            "output of one text must be a sound file",
            f"end it in {' or '.join(OUTPUT_SUFFIXES)}, or give - to stream it; use --batch for a folder",
        )


def _single_item(config: SynthesizeConfig) -> _Item:
    assert config.ref is not None
    if config.ref.is_dir():
        raise path_error(config.ref, "is a folder, not a reference clip", "give an audio file to --ref")
    if not config.ref.is_file():
        raise path_error(config.ref, "reference clip not found", "check the --ref path")
    text = config.text
    if config.text_file is not None and str(config.text_file) == STDOUT:
        text = sys.stdin.read()
    elif config.text_file is not None:
        text = read_utf8(config.text_file)
    units = None
    if config.units:
        table = _units_table(config.units)
        if table is None:
            units = _parse_units(config.units, "--units")
        elif len(table) == 1:
            units = next(iter(table.values()))
        else:
            raise path_error(
                config.units,
                f"{len(table)} rows of units for one text",
                "give a file with one row, or use --batch with ids",
            )
    if units is None and not text.strip():
        raise UserError(f"{config.text_file or '--text'}: the text is empty (give something to say)")
    # The id names the input in messages: the text file, or the option the text came from.
    source = str(config.text_file) if config.text_file else "--units" if units is not None else "--text"
    return _Item(id=source, text=text, ref=config.ref, units=units, extra={})


def _units_table(value: str) -> dict[str, list[int]] | None:
    """``value`` as a units.tsv (or a dv cluster folder), or None when it is inline unit ids."""
    path = Path(value)
    if re.fullmatch(r"[\d\s,]+", value.strip()):
        return None
    if path.is_dir():
        path = path / "units.tsv"
    if not path.is_file():
        raise path_error(value, "neither unit ids nor a units file", 'give ids like "12 873 5" or a units.tsv')
    return read_units(path)


def _parse_units(value: str, where: str) -> list[int]:
    try:
        return [int(u) for u in value.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"{where}: unit ids must be whole numbers ('{value[:40]}')") from None


def _batch_items(config: SynthesizeConfig) -> list[_Item]:
    path = config.batch
    assert path is not None
    if not path.is_file():
        raise path_error(path, "batch list not found", "give a TSV with columns id, text, ref")
    rows = list(csv.DictReader(io.StringIO(read_utf8(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    header = set(rows[0]) if rows else set()
    units = _units_table(config.units) if config.units else None
    needed = {"id", "ref"} | ({"text"} if units is None else set())
    if not rows or not needed <= header:
        raise path_error(
            path,
            f"needs a header with columns {', '.join(sorted(needed))} and at least one row",
            "e.g. id<TAB>text<TAB>ref",
        )
    base = path.parent
    items, seen = [], set()
    for lineno, row in enumerate(rows, start=2):
        uid = (row.get("id") or "").strip()
        if not uid or uid in seen:
            problem = f"{'empty' if not uid else 'duplicate'} id '{uid}'"
            raise path_error(f"{path}:{lineno}", problem, "ids must be unique")
        seen.add(uid)
        extra = {k: (v or "").strip() for k, v in row.items() if k not in ("id", "text", "ref") and k is not None}
        for column in PATH_COLUMNS:
            if extra.get(column):
                extra[column] = str(_resolve(base, extra[column]))
        ref = _resolve(base, (row.get("ref") or "").strip())
        if not ref.is_file():
            raise path_error(f"{path}:{lineno}", f"reference clip {ref} not found", "fix the ref column")
        row_units = None
        if units is not None:
            if uid not in units:
                raise path_error(config.units, f"no units for id '{uid}' of {path}", "give units for every id")
            row_units = units[uid]
        items.append(_Item(uid, (row.get("text") or "").strip(), ref, row_units, extra))
    return items


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return (p if p.is_absolute() else base / p).resolve()


def _load_t2u(config: SynthesizeConfig, joint: JointModel, device: torch.device) -> TextToUnit:
    from dvcli.t2u.inference import TextToUnit

    if config.t2u is None:
        raise UserError("text needs a text-to-unit model: give --t2u FOLDER (from dv train-t2u), or --units")
    t2u = TextToUnit.load(config.t2u, device=device)
    t2u.vocab.check_compatible(joint.units.k, joint.units.kmeans_sha256, where=f"{joint.path}")
    return t2u


# -- synthesis ------------------------------------------------------------------------------------


def _unit_sequences(context: _Context, item: _Item) -> list[list[int]]:
    """The deduplicated unit sequences (one per sentence) of ``item``.

    Raises:
        UserError: no sentence has anything readable, or given units outside the model's range.
    """
    k = context.joint.units.k
    if item.units is not None:
        seq = deduplicate(item.units)[0]
        bad = [u for u in seq if not 0 <= u < k]
        if bad:
            raise UserError(
                f"{item.id}: unit {bad[0]} is outside the model's 0..{k - 1} (units from another dv cluster run?)"
            )
        if not seq:
            raise UserError(f"{item.id}: no units given (nothing to say)")
        return [seq]
    chunks = [c for c in text_chunks(item.text, context.config.max_words) if normalize_text(c)]
    if not chunks:
        from dvcli.t2u.inference import unreadable_characters

        bad = "".join(dict.fromkeys(unreadable_characters(item.text)))[:20]
        detail = f" (only characters the English normaliser cannot read: {bad!r})" if bad else ""
        raise UserError(f"{item.id}: the text has nothing to say{detail}; give English text")
    if context.joint.units.content == "phonemes":
        from dvcli.phonemes import phoneme_ids

        kept = [ids for ids in (phoneme_ids(c) for c in chunks) if ids]
    else:
        assert context.t2u is not None  # loaded whenever an item has text instead of units (run)
        sequences = context.t2u.units(chunks, beams=context.config.beams)
        kept = [deduplicate(s)[0] for s in sequences if s]
    if len(kept) < len(chunks):
        log.warning(
            "%s: %d of %d sentence(s) gave no units and are left out", item.id, len(chunks) - len(kept), len(chunks)
        )
    if not kept:
        raise UserError(f"{item.id}: the text-to-unit model produced no units for this text")
    return kept


def _speaker(context: _Context, ref: Path) -> torch.Tensor:
    """The speaker vector of ``ref`` (each reference is prepared and embedded once)."""
    if ref not in context.embeddings:
        reference = load_reference(ref, context.options)
        context.embeddings[ref] = context.synthesizer.embed(reference.wav)
    return context.embeddings[ref]


def _synthesize(context: _Context, item: _Item, seed: int) -> tuple[torch.Tensor, float]:
    """The waveform of one item and the compute time it took (text-to-unit included)."""
    start = time.perf_counter()
    sequences = _unit_sequences(context, item)
    speaker = _speaker(context, item.ref)
    rng = torch.Generator().manual_seed(seed)
    wav = context.synthesizer.synthesize(sequences, speaker, context.controls, rng)
    return wav, time.perf_counter() - start


def _run_single(context: _Context, item: _Item) -> SynthesizeResult:
    config = context.config
    wav, spent = _synthesize(context, item, config.seed)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    save_audio(config.out, wav, context.synthesizer.sample_rate)
    seconds = wav.shape[0] / context.synthesizer.sample_rate
    log.info("wrote %s (%.2f s, real-time factor %.3f)", config.out, seconds, spent / max(seconds, 1e-9))
    return SynthesizeResult(config.out, 1, seconds, spent, [], context.synthesizer.backend.name)


def _run_stream(context: _Context, item: _Item) -> SynthesizeResult:
    """Speak ``item`` sentence by sentence to standard output, each sentence written as soon as it
    is synthesized, so a player at the other end of a pipe starts after the first one.

    The stream is a WAV of unknown length (``stream_format=wav``) or raw 16-bit mono PCM at the
    model's rate (``raw``). Sentences draw their noise one after another from one seeded generator,
    so the audio differs from ``-o FILE``'s (which decodes sentences in length-sorted batches).
    """
    config, synthesizer = context.config, context.synthesizer
    rate = synthesizer.sample_rate
    sink = sys.stdout.buffer
    start = time.perf_counter()
    speaker = _speaker(context, item.ref)
    rng = torch.Generator().manual_seed(config.seed)
    sentences = [item] if item.units is not None else _sentence_items(context, item)
    if config.stream_format == "wav":
        sink.write(wav_stream_header(rate))
    pause = torch.zeros(int(config.pause * rate))
    samples, first_audio = 0, None
    for index, sentence in enumerate(sentences):
        try:
            sequences = _unit_sequences(context, sentence)
        except UserError:
            if len(sentences) == 1:
                raise
            log.warning("%s: sentence %d gave nothing to say; skipped", item.id, index + 1)
            continue
        wav = join_with_pauses(synthesizer.infer(sequences, speaker, context.controls, rng), len(pause))
        if samples:
            sink.write(pcm16(pause))
            samples += len(pause)
        sink.write(pcm16(wav))
        sink.flush()
        samples += wav.shape[0]
        first_audio = first_audio if first_audio is not None else time.perf_counter() - start
    spent = time.perf_counter() - start
    seconds = samples / rate
    log.info(
        "streamed %.2f s of audio (%s, %d Hz) to standard output; first audio after %.2f s, real-time factor %.3f",
        seconds,
        "WAV" if config.stream_format == "wav" else "raw 16-bit PCM",
        rate,
        first_audio or 0.0,
        spent / max(seconds, 1e-9),
    )
    return SynthesizeResult(config.out, 1, seconds, spent, [], synthesizer.backend.name)


def _sentence_items(context: _Context, item: _Item) -> list[_Item]:
    """``item`` as one item per sentence (text chunks), in order."""
    chunks = text_chunks(item.text, context.config.max_words) or [item.text]
    return [dataclasses.replace(item, text=chunk) for chunk in chunks]


def _file_name(uid: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", uid).strip("._") or "clip"
    name, n = f"{stem}.wav", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}.wav"
    taken.add(name)
    return name


def _run_batch(context: _Context, items: list[_Item]) -> SynthesizeResult:
    config = context.config
    rate = context.synthesizer.sample_rate
    if config.denoise != "none":  # recorded, so dv evaluate run reports the denoised arm as its own system
        for item in items:
            earlier = item.extra.get("denoise", "")
            item.extra["denoise"] = "+".join(d for d in (earlier, config.denoise) if d and d != "none")
    extras = list(dict.fromkeys(k for item in items for k in item.extra if k != "condition"))
    lines = ["\t".join(SYNTH_COLUMNS + extras)]
    skipped: list[str] = []
    total_seconds = total_spent = 0.0
    taken: set[str] = set()
    inputs = {"model": config.model, "t2u": config.t2u or "", "batch": config.batch}
    with stage_output(config.out, stage="synthesize", config=config, inputs=inputs) as tmp:
        for item in track(items, "synthesizing"):
            try:
                wav, spent = _synthesize(context, item, config.seed + zlib.crc32(item.id.encode()))
            except UserError as err:  # this row's text or reference: skip it, keep the others
                log.warning("skipped %s: %s", item.id, err)
                skipped.append(item.id)
                continue
            name = _file_name(item.id, taken)
            save_audio(tmp / name, wav, rate)
            seconds = wav.shape[0] / rate
            total_seconds += seconds
            total_spent += spent
            cells = [
                item.id,
                item.text,
                str(item.ref),
                item.extra.get("condition", ""),
                name,
                f"{seconds:.3f}",
                f"{spent / max(seconds, 1e-9):.4f}",
            ] + [item.extra.get(k, "") for k in extras]
            lines.append("\t".join(" ".join(c.split()) for c in cells))
        if len(lines) == 1:
            raise UserError(f"{config.batch}: no row could be synthesized (see the warnings above)")
        (tmp / SYNTH_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        add_meta(
            tmp,
            clips=len(lines) - 1,
            skipped=skipped,
            seconds=total_seconds,
            rtf=total_spent / max(total_seconds, 1e-9),
            backend=context.synthesizer.backend.name,
        )
    return SynthesizeResult(
        config.out, len(lines) - 1, total_seconds, total_spent, skipped, context.synthesizer.backend.name
    )
