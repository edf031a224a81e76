"""Benchmark: `dv extract-units` throughput (seconds of audio per second) with a HuBERT-Base-sized model.

A randomly initialised HuBERT Base (95M parameters; random weights cost the same time as trained
ones) is saved as a Hugging Face folder, and the real stage runs on a synthetic corpus:

- ``transformers, batch 1``: the plain transformers forward of the whole 12-layer model, one file at
  a time, layer 6 taken from ``hidden_states`` (what one would write without dv);
- ``dv, batch 1``: ``dv extract-units --layer 6`` with one file per batch;
- ``dv, batched``: the same with dv's default batching (length-sorted, padded, masked).

    python bench/extract_units.py             # 24 files of 2-8 s, CPU, 2 threads
    python bench/extract_units.py --small     # a smoke test: tiny model, 4 short files

All rows run in the same process one after the other; results also go to bench/results/extract_units.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "extract_units.json")
    args = parser.parse_args()

    import torch
    from transformers import HubertConfig, HubertModel

    from dvcli.audio import load_audio
    from dvcli.logs import setup_logging
    from dvcli.manifest import read_manifest
    from dvcli.testing import make_manifest
    from stages.extract_units import ExtractUnitsConfig, run

    setup_logging(-1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.small:
        args.files, args.min_seconds, args.max_seconds = 4, 1.0, 2.0
        config = HubertConfig(
            hidden_size=48,
            num_hidden_layers=6,
            num_attention_heads=4,
            intermediate_size=96,
            conv_dim=[32] * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
        )
    else:
        config = HubertConfig()  # HuBERT Base: 12 layers, 768 wide, 94.7M parameters
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = HubertModel(config).eval()
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(tmp / "hubert")
        manifest = make_manifest(
            tmp / "corpus", speakers=4, utterances=max(1, args.files // 4), seconds=(args.min_seconds, args.max_seconds)
        )
        utterances = read_manifest(manifest)
        audio_seconds = sum(u.duration for u in utterances)

        model = model.to(args.device)
        with torch.inference_mode():
            model(torch.zeros(1, 16000, device=args.device))  # warm-up
            start = time.perf_counter()
            for u in utterances:
                wav = load_audio(u.audio)[None].to(args.device)
                model(wav, output_hidden_states=True).hidden_states[6].cpu()
            seconds = time.perf_counter() - start
        results["transformers, batch 1"] = {"seconds": seconds, "audio_seconds_per_second": audio_seconds / seconds}
        del model

        warm = make_manifest(tmp / "warm", speakers=1, utterances=1, seconds=(1.0, 1.0))
        run(
            ExtractUnitsConfig(
                manifest=warm, out=tmp / "warm-out", checkpoint=tmp / "hubert", layer=6, device=args.device
            )
        )  # one-time costs (imports, first kernels) out of the timings
        for name, batch_seconds in (("dv, batch 1", 1e-3), ("dv, batched", ExtractUnitsConfig.batch_seconds)):
            cfg = ExtractUnitsConfig(
                manifest=manifest,
                out=tmp / name.replace(" ", "").replace(",", "_"),
                checkpoint=tmp / "hubert",
                layer=6,
                batch_seconds=batch_seconds,
                device=args.device,
            )
            start = time.perf_counter()
            run(cfg)
            seconds = time.perf_counter() - start  # includes loading the model and decoding the audio
            results[name] = {"seconds": seconds, "audio_seconds_per_second": audio_seconds / seconds}

    print(
        f"{len(utterances)} files, {audio_seconds:.1f} s of audio, HuBERT {params / 1e6:.1f}M parameters, "
        f"layer 6, {args.device}, {args.threads} threads"
    )
    print(f"{'run':<24}{'seconds':>10}{'audio s / s':>14}")
    for name, r in results.items():
        print(f"{name:<24}{r['seconds']:>10.1f}{r['audio_seconds_per_second']:>14.2f}")
    speed = {name: r["audio_seconds_per_second"] for name, r in results.items()}
    print(f"\nbatched / batch 1: {speed['dv, batched'] / speed['dv, batch 1']:.2f}x")
    print(f"dv batched / transformers batch 1: {speed['dv, batched'] / speed['transformers, batch 1']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "params": params,
                "audio_seconds": audio_seconds,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
