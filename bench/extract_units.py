"""Benchmark: `dv extract-units` throughput (seconds of audio per second) with a HuBERT-Base-sized model.

A randomly initialised HuBERT Base (95M parameters; random weights cost the same time as trained
ones) and a synthetic corpus; every row reads the same files and keeps layer 6:

- ``transformers, batch 1``: the plain transformers forward of the whole 12-layer model, one file at
  a time, layer 6 taken from ``hidden_states`` (what one would write without dv);
- ``dv, auto``: ``dv extract-units --layer 6`` as a user runs it (the batch size it picks for the
  device: one file per forward on CPU);
- ``dv, batch 32``: the same with padded batches of up to 32 files (the CUDA default);
- ``dv, bf16``: ``dv extract-units --set precision=bf16`` (bfloat16 autocast; the CUDA default, opt-in on CPU);
- ``fairseq``, with ``--fairseq-python``: fairseq's own dump (dump_hubert_feature.py's loop, by
  bench/fairseq_hubert_dump.py in that Python) of the same checkpoint, which fairseq builds; dv then
  reads fairseq's ``.pt`` and its features are compared with fairseq's.

Each row is timed from loading the model to the last feature file written; rows alternate over
``--rounds`` rounds in one run and the medians are reported.

    python bench/extract_units.py                                   # transformers and dv, CPU, 2 threads
    python bench/extract_units.py --fairseq-python /tmp/fsq/bin/python   # against fairseq
    python bench/extract_units.py --small                           # a smoke test: tiny model, 4 short files

Results also go to bench/results/extract_units.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent


def _fairseq(python: str, *args: str) -> dict:
    done = subprocess.run([python, str(HERE / "fairseq_hubert_dump.py"), *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"fairseq helper failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fairseq-python", help="a Python with fairseq (fairseq-fixed) installed")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "extract_units.json")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import HubertConfig, HubertModel

    from dvcli.audio import load_audio
    from dvcli.features.hubert import load_hubert
    from dvcli.features.store import FeatureStore
    from dvcli.logs import setup_logging
    from dvcli.manifest import read_manifest
    from dvcli.testing import make_manifest
    from stages.extract_units import ExtractUnitsConfig, run

    setup_logging(-1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.small:
        args.files, args.min_seconds, args.max_seconds, args.rounds = 4, 1.0, 2.0, 1
    times: dict[str, list[float]] = {}
    parity = None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        manifest = make_manifest(
            tmp / "corpus", speakers=4, utterances=max(1, args.files // 4), seconds=(args.min_seconds, args.max_seconds)
        )
        utterances = read_manifest(manifest)
        audio_seconds = sum(u.duration for u in utterances)
        if args.fairseq_python:
            checkpoint = tmp / "hubert_base.pt"
            _fairseq(args.fairseq_python, "--build", str(checkpoint))
            file_list = tmp / "files.txt"
            file_list.write_text("".join(f"{u.audio}\n" for u in utterances), encoding="utf-8")
            model = load_hubert(checkpoint, 12).model  # the same weights, for the transformers row
        else:
            checkpoint = tmp / "hubert"
            model = HubertModel(HubertConfig() if not args.small else _tiny(HubertConfig)).eval()
            model.save_pretrained(checkpoint)
        params = sum(p.numel() for p in model.parameters())
        model = model.to(args.device)

        def transformers_batch_1() -> None:
            with torch.inference_mode():
                for u in utterances:
                    wav = load_audio(u.audio)[None].to(args.device)
                    model(wav, output_hidden_states=True).hidden_states[6].cpu()

        def dv(name: str, max_batch: int | None, precision: str = "auto") -> None:
            run(
                ExtractUnitsConfig(
                    manifest=manifest,
                    out=tmp / name,
                    checkpoint=checkpoint,
                    layer=6,
                    max_batch=max_batch,
                    precision=precision,
                    device=args.device,
                )
            )

        rows = {
            "transformers, batch 1": transformers_batch_1,
            "dv, auto": lambda: dv("auto", None),
            "dv, batch 32": lambda: dv("b32", 32),
            "dv, bf16": lambda: dv("bf16", None, "bf16"),
        }
        transformers_batch_1()  # one-time costs (first kernels) out of the timings
        dv("warm", None)
        for _ in range(args.rounds):
            for name, fn in rows.items():
                start = time.perf_counter()
                fn()
                times.setdefault(name, []).append(time.perf_counter() - start)
            if args.fairseq_python:
                got = _fairseq(
                    args.fairseq_python,
                    *("--dump", str(checkpoint), "--files", str(file_list), "--layer", "6"),
                    *("--threads", str(args.threads), "--out", str(tmp / "fairseq")),
                )
                times.setdefault("fairseq", []).append(got["seconds"])
        if args.fairseq_python:
            store = FeatureStore(tmp / "auto")
            diffs = [
                float(np.abs(store.get(u.id).astype(np.float32) - np.load(tmp / "fairseq" / f"{i}.npy")).max())
                for i, u in enumerate(utterances)
            ]
            parity = max(diffs)

    speed = {name: audio_seconds / statistics.median(t) for name, t in times.items()}
    print(
        f"{len(utterances)} files, {audio_seconds:.1f} s of audio, HuBERT {params / 1e6:.1f}M parameters, "
        f"layer 6, {args.device}, {args.threads} threads, median of {args.rounds} rounds"
    )
    print(f"{'run':<24}{'seconds':>10}{'audio s / s':>14}")
    for name, t in times.items():
        print(f"{name:<24}{statistics.median(t):>10.1f}{speed[name]:>14.2f}")
    print(f"\ndv batch 32 / dv auto: {speed['dv, batch 32'] / speed['dv, auto']:.2f}x")
    print(f"dv auto / transformers batch 1: {speed['dv, auto'] / speed['transformers, batch 1']:.2f}x")
    if "fairseq" in speed:
        print(f"dv auto / fairseq: {speed['dv, auto'] / speed['fairseq']:.2f}x (target >= 1.2x)")
        print(f"dv bf16 / fairseq: {speed['dv, bf16'] / speed['fairseq']:.2f}x")
        print(f"largest |dv - fairseq| feature difference: {parity:.2e} (dv stores float16)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "params": params,
                "audio_seconds": audio_seconds,
                "seconds": times,
                "audio_seconds_per_second": speed,
                "max_abs_difference_to_fairseq": parity,
            },
            indent=2,
        )
        + "\n"
    )


def _tiny(config_class: type) -> object:
    return config_class(
        hidden_size=48,
        num_hidden_layers=6,
        num_attention_heads=4,
        intermediate_size=96,
        conv_dim=[32] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )


if __name__ == "__main__":
    main()
