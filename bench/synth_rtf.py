"""Synthesis speed on CPU at the base configuration: ``dv synthesize``'s PyTorch and ONNX Runtime
backends next to Coqui TTS's ``Vits`` of the same configuration, in one run; peak memory.

    python bench/synth_rtf.py                          # 4 s utterances, 1 thread, 5 interleaved runs
    python bench/synth_rtf.py --seconds 8 --threads 2 --steps 10

The Coqui side (its venv, the model built at our configuration, its inference call, timing and
memory helpers) is ``bench/vits_vs_coqui.py``'s, imported, so both benchmarks measure Coqui the same
way. All models are randomly initialised (speed needs no trained weights): our generator at
``VitsConfig.base(n_units=1000)`` with a full-size CAM++, Coqui's ``Vits`` with the same settings.

- real-time factor = compute time / seconds of audio produced, for units -> waveform (Coqui gets a
  ready d-vector, so the speaker encoder is timed on its own row: a 3 s reference -> embedding);
- our rows run :class:`dvcli.synthesis.pipeline.Synthesizer` (what ``dv synthesize`` runs per sentence) with
  either backend; the ONNX graphs are exported once before timing (``dv synthesize`` caches them);
- runs of the three alternate in one process so machine load hits all alike; medians reported;
- peak memory: each contender in its own fresh process (peak RSS over the baseline after imports;
  the ONNX process loads the exported graphs only, as a deployment would, not the PyTorch weights).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import vits_vs_coqui as coqui_bench  # noqa: E402  (the Coqui venv, model, inference and timing helpers)

CONTENDERS = ("pytorch", "onnx", "coqui")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="utterance length (units at 50 per second)")
    parser.add_argument("--threads", type=int, default=1, help="threads in all three (torch and ONNX Runtime)")
    parser.add_argument("--steps", type=int, default=5, help="timed runs per contender")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--own-torch", action="store_true", help="let the Coqui venv install its own torch")
    parser.add_argument("--coqui-python", type=Path, help="use this Python (with coqui-tts) instead of the venv")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--onnx-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # vits_vs_coqui.setup reads these.
    args.batch, args.device = 1, "cpu"
    if args.worker:
        result = timing_worker(args) if args.worker[0] == "timing" else memory_worker(args, args.worker[1])
        print(json.dumps(result))
        return

    python = args.coqui_python or coqui_bench.ensure_venv(args.own_torch)
    print(
        f"base configuration, {args.seconds:g} s utterances, {args.threads} thread(s), CPU, "
        f"{args.steps} interleaved runs each",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        args.onnx_dir = Path(tmp) / "onnx"
        timing = run_worker(python, args, "timing")
        memory = {name: run_worker(python, args, "memory", name) for name in CONTENDERS}
    print(
        f"torch {timing['torch']}, onnxruntime {timing['onnxruntime']}, coqui-tts {timing['coqui_version']}; "
        f"generator parameters: ours {timing['params']['ours']:,}, Coqui {timing['params']['coqui']:,}"
    )
    rtf, cpu = timing["rtf"], timing["rtf_cpu"]
    print(f"{'median':<44}{'PyTorch':>10}{'ONNX':>10}{'Coqui':>10}{'PyTorch/Coqui':>15}{'ONNX/Coqui':>12}")
    for name, row in (("real-time factor, wall", rtf), ("real-time factor, CPU time", cpu)):
        print(
            f"{name:<44}{row['pytorch']:>10.3f}{row['onnx']:>10.3f}{row['coqui']:>10.3f}"
            f"{row['pytorch'] / row['coqui']:>14.2f}x{row['onnx'] / row['coqui']:>11.2f}x"
        )
    embed = timing["embed_ms"]
    print(f"{'speaker embedding of a 3 s reference (ms)':<44}{embed['pytorch']:>10.1f}{embed['onnx']:>10.1f}{'-':>10}")
    mem = {k: v["peak_mib"] for k, v in memory.items()}
    print(
        f"{'peak memory (MiB RSS over baseline)':<44}{mem['pytorch']:>10.0f}{mem['onnx']:>10.0f}{mem['coqui']:>10.0f}"
        f"{mem['pytorch'] / mem['coqui']:>14.2f}x{mem['onnx'] / mem['coqui']:>11.2f}x"
    )
    default = min(("pytorch", "onnx"), key=lambda k: rtf[k])
    print(
        f"faster backend here: {default}; our CPU default / Coqui = {rtf['onnx'] / rtf['coqui']:.2f}x (target <= 0.5x)"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "synth_rtf.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "timing": timing, "memory": memory}, indent=2)
    )


def run_worker(python: Path, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    options = {"seconds": args.seconds, "threads": args.threads, "steps": args.steps, "seed": args.seed}
    options["onnx_dir"] = args.onnx_dir
    return coqui_bench.run_script_worker(python, Path(__file__).resolve(), args.threads, options, *extra)


# -- workers (run inside the Coqui venv) ------------------------------------------------------------
def build_ours(inputs: dict[str, Any]) -> Any:
    """A random base-size joint model (generator + full CAM++), as ``load_joint`` returns one."""

    from dvcli.joint.model import JointModel, UnitInfo
    from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig
    from dvcli.models.vits import VitsGenerator
    from dvcli.speaker.encoder import SpeakerFrontend

    config = inputs["config"]
    generator = VitsGenerator(config).eval()
    speaker = SpeakerFrontend(CAMPPlus(CAMPPlusConfig(embedding_size=config.speaker_embedding_dim))).eval()
    return JointModel(generator, speaker, UnitInfo(k=config.n_units), {}, Path("random"))


def onnx_synthesizer(onnx_dir: Path, threads: int) -> Any:
    from dvcli.synthesis.onnx_backend import OnnxBackend, read_export_config
    from dvcli.synthesis.pipeline import Synthesizer

    return Synthesizer(read_export_config(onnx_dir), OnnxBackend.from_folder(onnx_dir, threads=threads))


def synth_once(synth: Any, inputs: dict[str, Any], seed: int) -> float:
    """Seconds of audio from one utterance of units."""
    import torch

    from dvcli.synthesis.pipeline import SynthesisControls

    n = int(inputs["unit_lengths"][0])
    units = inputs["units"][0, :n].tolist()
    wav = synth.infer([units], inputs["speaker"][0], SynthesisControls(), torch.Generator().manual_seed(seed))[0]
    return wav.shape[0] / inputs["config"].sample_rate


def timing_worker(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata

    import onnxruntime
    import torch

    from dvcli.synthesis.onnx_backend import export_onnx
    from dvcli.synthesis.pipeline import Synthesizer

    inputs = coqui_bench.setup(args)
    joint = build_ours(inputs)
    export_onnx(joint, args.onnx_dir)
    synths = {"pytorch": Synthesizer(joint), "onnx": onnx_synthesizer(args.onnx_dir, args.threads)}
    coqui, _, _ = coqui_bench.build_coqui(inputs)
    coqui.eval()
    count = lambda params: sum(p.numel() for p in params)  # noqa: E731
    params = {
        "ours": count(joint.generator.parameters()),
        "coqui": count(p for k, p in coqui.named_parameters() if not k.startswith("disc.")),
    }
    run = {
        "pytorch": lambda i: synth_once(synths["pytorch"], inputs, i),
        "onnx": lambda i: synth_once(synths["onnx"], inputs, i),
        "coqui": lambda i: coqui_bench.infer_coqui(coqui, inputs),
    }
    device = inputs["device"]
    for name in CONTENDERS:  # warm-up
        run[name](0)
    rtf: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    rtf_cpu: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    with torch.inference_mode():
        for i in range(args.steps):
            order = CONTENDERS[i % 3 :] + CONTENDERS[: i % 3]
            for name in order:
                wall, cpu, audio = coqui_bench._timed(lambda: run[name](i + 1), device)
                rtf[name].append(wall / audio)
                rtf_cpu[name].append(cpu / audio)
    reference = inputs["wav"][0, : 3 * 16000]
    embed_ms = {}
    for name, synth in synths.items():
        synth.embed(reference)
        embed_ms[name] = 1000 * statistics.median(
            coqui_bench._timed(lambda: synth.embed(reference), device)[0] for _ in range(args.steps)
        )
    return {
        "rtf": {k: statistics.median(v) for k, v in rtf.items()},
        "rtf_cpu": {k: statistics.median(v) for k, v in rtf_cpu.items()},
        "all": rtf,
        "embed_ms": embed_ms,
        "params": params,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "coqui_version": importlib.metadata.version("coqui-tts"),
    }


def memory_worker(args: argparse.Namespace, impl: str) -> dict[str, Any]:
    import onnxruntime  # noqa: F401  (every process imports the same packages: one baseline for all)
    import TTS.tts.models.vits  # noqa: F401

    import dvcli.synthesis.onnx_backend  # noqa: F401

    inputs = coqui_bench.setup(args)
    baseline = coqui_bench._rss_mib()
    if impl == "pytorch":
        from dvcli.synthesis.pipeline import Synthesizer

        synth = Synthesizer(build_ours(inputs))
        fn = lambda: synth_once(synth, inputs, 0)  # noqa: E731
    elif impl == "onnx":
        synth = onnx_synthesizer(args.onnx_dir, args.threads)
        fn = lambda: synth_once(synth, inputs, 0)  # noqa: E731
    else:
        coqui, _, _ = coqui_bench.build_coqui(inputs)
        coqui.eval()
        fn = lambda: coqui_bench.infer_coqui(coqui, inputs)  # noqa: E731
    import torch

    with torch.inference_mode():
        for _ in range(2):
            fn()
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline, "baseline_mib": baseline}


if __name__ == "__main__":
    main()
