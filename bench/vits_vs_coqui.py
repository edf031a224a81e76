"""Our VITS generator vs Coqui TTS's ``Vits`` at the same configuration: training step, inference, memory.

    python bench/vits_vs_coqui.py                      # CPU, batch 4 of 2.4-4 s, 2 threads
    python bench/vits_vs_coqui.py --batch 16 --seconds 8 --threads 8 --steps 10
    python bench/vits_vs_coqui.py --device cuda

One command does everything: it creates ``bench/.coqui-venv`` (git-ignored) on first use with
``pip install coqui-tts``, then runs the measurements with that venv's Python, which sees both
packages. By default the venv borrows the calling interpreter's site-packages through a ``.pth``
file, so both models run on the *same* torch build (coqui-tts does not pin torch); pass
``--own-torch`` to let pip install a separate torch into the venv instead.

Both models are randomly initialised at DESIGN.md's base configuration (16 kHz, hop 256, hidden 192,
6 transformer layers, 16 posterior WaveNet layers, 4 couplings, stochastic durations, HiFi-GAN
[8,8,2,2] with 512 channels, MPD [2,3,5,7,11] + one scale discriminator, 1000 units, speaker
conditioning of 256 channels, segment 8192 samples); speed needs no trained weights.

- training step: spectrograms from the waveform batch, generator forward, discriminator update,
  generator update, gradient clipping at 1000 (Coqui's Trainer does the same per optimizer);
- inference: one utterance of ``--seconds`` worth of units (50 units/s), real-time factor =
  compute time / seconds of audio produced (random durations differ, hence per-second);
- CPU time: the process's CPU seconds (``time.process_time``) next to wall-clock time; on a shared
  machine it is the steadier measure (with one thread it barely sees other processes' load);
- peak memory: each model in its own fresh process (peak RSS over the baseline after imports on
  CPU; ``torch.cuda.max_memory_allocated`` on CUDA).

Steps and inference runs of the two implementations alternate in one process, so machine load hits
both alike; the table reports medians and the ratio ours / Coqui (< 1 = we are faster).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "bench" / ".coqui-venv"
COQUI_VERSION = "0.28.0"


# -- orchestration (any Python) -------------------------------------------------------------------
def ensure_venv(own_torch: bool) -> Path:
    """Create the Coqui venv once; return its Python."""
    python = VENV / "bin" / "python"
    marker = VENV / f".coqui-{COQUI_VERSION}-{'own' if own_torch else 'shared'}-torch"
    if marker.exists():
        return python
    print(f"creating {VENV} with coqui-tts=={COQUI_VERSION} (once; ~1 minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    if not own_torch:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # Appended after the venv's own site-packages: Coqui's extra dependencies win, torch is shared.
        Path(site, "zz_shared_parent_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    packages = [f"coqui-tts[codec]=={COQUI_VERSION}", "six"]  # six: imported by coqui-tts, not declared
    if own_torch:
        packages += ["torch", "torchaudio"]
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages], check=True
    )
    marker.touch()
    return python


def run_worker(python: Path, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    options = {"batch": args.batch, "seconds": args.seconds, "threads": args.threads, "steps": args.steps}
    options.update(device=args.device, seed=args.seed)
    return run_script_worker(python, Path(__file__).resolve(), args.threads, options, *extra)


def run_script_worker(python: Path, script: Path, threads: int, options: dict[str, Any], *extra: str) -> dict[str, Any]:
    """Run ``script --worker EXTRA --OPTION VALUE ...`` with ``python`` on ``threads`` OpenMP threads;
    its last stdout line is the JSON result (also used by ``bench/synth_rtf.py``)."""
    cmd = [str(python), str(script), "--worker", *extra]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"worker {' '.join(extra)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="training batch size")
    parser.add_argument("--seconds", type=float, default=4.0, help="longest utterance (training and inference)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in both")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (and inference runs) per model")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--own-torch", action="store_true", help="let the Coqui venv install its own torch")
    parser.add_argument("--coqui-python", type=Path, help="use this Python (with coqui-tts) instead of the venv")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = timing_worker(args) if args.worker[0] == "timing" else memory_worker(args, *args.worker[1:])
        print(json.dumps(result))
        return

    python = args.coqui_python or ensure_venv(args.own_torch)
    print(
        f"batch {args.batch}, utterances up to {args.seconds} s, {args.threads} threads, {args.device}, "
        f"{args.steps} interleaved steps / inference runs each",
        flush=True,
    )
    timing = run_worker(python, args, "timing")
    memory = {
        (impl, phase): run_worker(python, args, "memory", impl, phase)
        for phase in ("train", "infer")
        for impl in ("ours", "coqui")
    }
    print(
        f"torch {timing['torch']}, coqui-tts {timing['coqui_version']}, "
        f"generator parameters: ours {timing['params']['ours']:,} (incl. speaker_proj), "
        f"Coqui {timing['params']['coqui']:,}; discriminator: ours {timing['params']['ours_disc']:,}, "
        f"Coqui {timing['params']['coqui_disc']:,}"
    )
    unit = "MiB " + ("peak RSS over baseline" if args.device == "cpu" else "max allocated")
    rows = [
        ("training step, wall (s)", timing["train"]["ours"], timing["train"]["coqui"], "<= 1.0"),
        ("training step, CPU time (s)", timing["train_cpu"]["ours"], timing["train_cpu"]["coqui"], "<= 1.0"),
        ("inference real-time factor, wall", timing["infer"]["ours"], timing["infer"]["coqui"], "<= 0.7"),
        ("inference real-time factor, CPU time", timing["infer_cpu"]["ours"], timing["infer_cpu"]["coqui"], "<= 0.7"),
        (f"training memory ({unit})", memory["ours", "train"]["peak_mib"], memory["coqui", "train"]["peak_mib"], ""),
        (f"inference memory ({unit})", memory["ours", "infer"]["peak_mib"], memory["coqui", "infer"]["peak_mib"], ""),
    ]
    if args.device == "cuda":  # process CPU time says nothing about GPU work
        rows = [r for r in rows if "CPU time" not in r[0]]
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'median':<{width}}{'ours':>10}{'Coqui':>10}{'ours/Coqui':>12}{'target':>9}")
    for name, ours, coqui, target in rows:
        print(f"{name:<{width}}{ours:>10.3f}{coqui:>10.3f}{ours / coqui:>11.2f}x{target:>9}")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "vits_vs_coqui.json").write_text(
        json.dumps(
            {
                "args": vars(args) | {"coqui_python": str(python)},
                "timing": timing,
                "memory": {f"{k[0]}_{k[1]}": v for k, v in memory.items()},
            },
            indent=2,
            default=str,
        )
    )


# -- workers (run inside the Coqui venv) ------------------------------------------------------------
def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Inputs shared by both models: a batch of synthetic voices, random units and speaker vectors."""
    import numpy as np
    import torch

    from dvcli.models.vits import VitsConfig
    from dvcli.testing import voice

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = VitsConfig.base(n_units=1000)
    hop, rate = config.hop_length, config.sample_rate
    rng = np.random.default_rng(args.seed)
    secs = rng.uniform(0.6 * args.seconds, args.seconds, args.batch)
    secs[0] = args.seconds
    frames = np.maximum((secs * rate / hop).astype(int), config.segment_frames)
    wav = torch.zeros(args.batch, int(frames.max()) * hop)
    for i, n in enumerate(frames):
        wav[i, : n * hop] = torch.from_numpy(voice(n * hop / rate, rate, pitch=100 + 15 * i, seed=i))
    unit_lengths = torch.from_numpy((frames * hop / rate * 50).astype(int))  # HuBERT: 50 units per second
    units = torch.randint(0, 1000, (args.batch, int(unit_lengths.max())))
    return {
        "config": config,
        "wav": wav,
        "wav_lengths": torch.from_numpy(frames * hop),
        "units": units,
        "unit_lengths": unit_lengths,
        "speaker": torch.randn(args.batch, config.speaker_embedding_dim),
        "d_vector": torch.randn(args.batch, config.gin_channels),
        "device": torch.device(args.device),
    }


def build_ours(inputs: dict[str, Any]) -> tuple[Any, Any]:
    from dvcli.models.vits import VitsTrainer
    from dvcli.models.vits.train_step import build

    generator, discriminator = build(inputs["config"], inputs["device"])
    return generator, VitsTrainer(generator, discriminator)


def build_coqui(inputs: dict[str, Any]) -> tuple[Any, list[Any], list[Any]]:
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.vits_config import VitsConfig as CoquiConfig
    from TTS.tts.models.vits import Vits, VitsArgs
    from TTS.tts.utils.speakers import SpeakerManager

    c = inputs["config"]
    model_args = VitsArgs(
        num_chars=c.vocab_size,
        out_channels=c.spec_channels,
        spec_segment_size=c.segment_frames,
        hidden_channels=c.hidden_channels,
        hidden_channels_ffn_text_encoder=c.filter_channels,
        num_heads_text_encoder=c.n_heads,
        num_layers_text_encoder=c.n_layers,
        kernel_size_text_encoder=c.kernel_size,
        dropout_p_text_encoder=c.dropout,
        dropout_p_duration_predictor=c.duration_dropout,
        kernel_size_posterior_encoder=c.posterior_kernel_size,
        num_layers_posterior_encoder=c.posterior_layers,
        kernel_size_flow=c.flow_kernel_size,
        num_layers_flow=c.flow_layers,
        use_sdp=c.stochastic_duration,
        resblock_kernel_sizes_decoder=c.resblock_kernel_sizes,
        resblock_dilation_sizes_decoder=c.resblock_dilations,
        upsample_rates_decoder=c.upsample_rates,
        upsample_initial_channel_decoder=c.upsample_initial_channels,
        upsample_kernel_sizes_decoder=c.upsample_kernel_sizes,
        periods_multi_period_discriminator=c.discriminator_periods,
        use_d_vector_file=True,
        d_vector_dim=c.gin_channels,
    )
    audio = BaseAudioConfig(
        sample_rate=c.sample_rate,
        fft_size=c.n_fft,
        win_length=c.win_length,
        hop_length=c.hop_length,
        num_mels=c.n_mels,
        mel_fmin=c.mel_fmin,
        mel_fmax=c.mel_fmax,
    )
    config = CoquiConfig(model_args=model_args, audio=audio)

    class UnitVits(Vits):
        tokenizer = None  # units are the tokens: no text tokenizer (it would resize the embedding to its alphabet)

    model = UnitVits(config, speaker_manager=SpeakerManager()).to(inputs["device"])
    assert model.text_encoder.emb.num_embeddings == c.vocab_size
    # The optimisers and criteria Coqui's Trainer would build (get_optimizer / get_criterion).
    gen_params = [p for k, p in model.named_parameters() if not k.startswith("disc.")]
    adam = {"lr": 2e-4, "betas": (0.8, 0.99), "eps": 1e-9, "weight_decay": 0.01}
    optimizers = [torch.optim.AdamW(model.disc.parameters(), **adam), torch.optim.AdamW(gen_params, **adam)]
    return model, optimizers, model.get_criterion()


def coqui_step(model: Any, optimizers: list[Any], criteria: list[Any], inputs: dict[str, Any]) -> None:
    """What Coqui's Trainer does per batch for a GAN model (``Trainer.optimize`` per optimizer)."""
    import torch

    dev = inputs["device"]
    batch = {
        "tokens": inputs["units"].to(dev),
        "token_lens": inputs["unit_lengths"].to(dev),
        "waveform": inputs["wav"].unsqueeze(1).to(dev),
        "waveform_rel_lens": (inputs["wav_lengths"] / inputs["wav"].shape[1]).to(dev),
        "d_vectors": inputs["d_vector"].to(dev),
        "speaker_ids": None,
        "language_ids": None,
    }
    batch = model.format_batch_on_device(batch)
    for idx, optimizer in enumerate(optimizers):
        _, loss_dict = model.train_step(batch, criteria[idx], idx)
        loss_dict["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1000)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def our_step(trainer: Any, inputs: dict[str, Any]) -> None:
    from dvcli.models.vits import VitsBatch

    batch = VitsBatch(inputs["units"], inputs["unit_lengths"], inputs["wav"], inputs["wav_lengths"])
    trainer.step(batch.to(inputs["device"]), inputs["speaker"].to(inputs["device"]))


def infer_ours(generator: Any, inputs: dict[str, Any]) -> float:
    """Seconds of audio produced."""
    dev = inputs["device"]
    n = int(inputs["unit_lengths"][0])
    _, lengths = generator.infer(
        inputs["units"][:1, :n].to(dev), inputs["unit_lengths"][:1].to(dev), inputs["speaker"][:1].to(dev)
    )
    return float(lengths[0]) / inputs["config"].sample_rate


def infer_coqui(model: Any, inputs: dict[str, Any]) -> float:
    dev = inputs["device"]
    n = int(inputs["unit_lengths"][0])
    out = model.inference(
        inputs["units"][:1, :n].to(dev),
        aux_input={"x_lengths": inputs["unit_lengths"][:1].to(dev), "d_vectors": inputs["d_vector"][:1].to(dev)},
    )
    return float(out["y_mask"].sum()) * inputs["config"].hop_length / inputs["config"].sample_rate


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Any, device: Any) -> tuple[float, float, Any]:
    """Wall-clock and process CPU seconds of ``fn()``, and its value."""
    _sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    value = fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, value


def timing_worker(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata

    import torch

    inputs = setup(args)
    dev = inputs["device"]
    generator, trainer = build_ours(inputs)
    coqui, optimizers, criteria = build_coqui(inputs)

    def count(params: Any) -> int:
        return sum(p.numel() for p in params)

    params = {
        "ours": count(generator.parameters()),
        "ours_disc": count(trainer.discriminator.parameters()),
        "coqui": count(p for k, p in coqui.named_parameters() if not k.startswith("disc.")),
        "coqui_disc": count(coqui.disc.parameters()),
    }

    contenders = {
        "ours": lambda: our_step(trainer, inputs),
        "coqui": lambda: coqui_step(coqui, optimizers, criteria, inputs),
    }
    runs: dict[str, dict[str, list[float]]] = {
        k: {"ours": [], "coqui": []} for k in ("train", "train_cpu", "infer", "infer_cpu")
    }
    for name, fn in contenders.items():  # warm-up (numba cache, allocator, oneDNN kernels)
        fn()
    for i in range(args.steps):
        for name in list(contenders) if i % 2 == 0 else list(reversed(contenders)):
            wall, cpu, _ = _timed(contenders[name], dev)
            runs["train"][name].append(wall)
            runs["train_cpu"][name].append(cpu)

    generator.eval()
    coqui.eval()
    infer = {"ours": lambda: infer_ours(generator, inputs), "coqui": lambda: infer_coqui(coqui, inputs)}
    for fn in infer.values():
        fn()
    for i in range(args.steps):
        for name in list(infer) if i % 2 == 0 else list(reversed(infer)):
            wall, cpu, audio = _timed(infer[name], dev)
            runs["infer"][name].append(wall / audio)
            runs["infer_cpu"][name].append(cpu / audio)
    return {
        **{key: {k: statistics.median(v) for k, v in values.items()} for key, values in runs.items()},
        "all": runs,
        "params": params,
        "torch": torch.__version__,
        "coqui_version": importlib.metadata.version("coqui-tts"),
    }


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_worker(args: argparse.Namespace, impl: str, phase: str) -> dict[str, Any]:
    import torch
    import TTS.tts.models.vits  # noqa: F401  (both packages imported: the same baseline for both)

    inputs = setup(args)
    dev = inputs["device"]
    baseline = _rss_mib()
    if impl == "ours":
        generator, trainer = build_ours(inputs)
        run = (
            (lambda: our_step(trainer, inputs)) if phase == "train" else (lambda: infer_ours(generator.eval(), inputs))
        )
    else:
        coqui, optimizers, criteria = build_coqui(inputs)
        run = (
            (lambda: coqui_step(coqui, optimizers, criteria, inputs))
            if phase == "train"
            else (lambda: infer_coqui(coqui.eval(), inputs))
        )
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        run()
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline
    return {"peak_mib": peak, "baseline_mib": baseline}


if __name__ == "__main__":
    main()
