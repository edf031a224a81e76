"""Real-time factor of CAM++ embedding extraction on CPU, fbank included.

Usage: python bench/speaker_rtf.py [--seconds 3] [--repeats 20] [--threads 1 2]

RTF = processing time / audio duration, for one clip at a time (the latency case). Three paths
are timed in the same run so their ratios hold even on a busy machine:

- ``dv``: :meth:`dvcli.speaker.encoder.SpeakerFrontend.embed` (batched Kaldi fbank + CAM++ in PyTorch);
- ``onnxruntime``: the same fbank, then CAM++ exported to ONNX and run by ONNX Runtime (the way
  3D-Speaker's runtime deploys it);
- ``torchaudio fbank`` vs ``dv fbank``: the front end alone.

Published references (other machines, so compare orders of magnitude only): 3D-Speaker's ONNX
runtime reports RTF 0.049 on one Xeon core for CAM++; the CAM++ paper reports 0.013.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torchaudio.compliance.kaldi as kaldi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_seconds  # noqa: E402

from dvcli.features.fbank import KaldiFbank  # noqa: E402
from dvcli.models.campplus import CAMPPlus, CAMPPlusConfig  # noqa: E402
from dvcli.speaker.encoder import SpeakerFrontend, export_onnx  # noqa: E402
from dvcli.testing import voice  # noqa: E402

REFERENCES = {"3D-Speaker ONNX runtime, 1 Xeon core": 0.049, "CAM++ paper": 0.013}


def _onnx_session(model: CAMPPlus, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(export_onnx(model), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--embedding-size", type=int, default=192)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = CAMPPlus(CAMPPlusConfig(embedding_size=args.embedding_size)).eval()
    frontend = SpeakerFrontend(model).eval()
    fbank = KaldiFbank()
    clip = torch.from_numpy(voice(args.seconds, pitch=140.0, seed=1))
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        session = _onnx_session(model, threads)

        def onnx_path() -> None:
            with torch.no_grad():
                feats, _ = fbank(clip[None])
            session.run(None, {"feats": feats.numpy()})

        def reference_fbank() -> None:
            feats = kaldi.fbank(clip[None], num_mel_bins=80, sample_frequency=16000, dither=0.0)
            _ = feats - feats.mean(0)

        row = {
            "threads": threads,
            "dv": median_seconds(lambda: frontend.embed([clip]), args.repeats, warmup=2) / args.seconds,
            "onnxruntime": median_seconds(onnx_path, args.repeats) / args.seconds,
            "dv fbank": median_seconds(lambda: fbank(clip[None]), args.repeats) / args.seconds,
            "torchaudio fbank": median_seconds(reference_fbank, args.repeats) / args.seconds,
        }
        results.append(row)

    print(
        f"CAM++ (embedding {args.embedding_size}, {sum(p.numel() for p in model.parameters()):,} parameters), "
        f"{args.seconds:g} s clips, median of {args.repeats}; RTF = time / audio duration"
    )
    print(
        f"{'threads':>7}  {'dv (torch)':>10}  {'onnxruntime':>11}  {'dv/ort':>6}  {'dv fbank':>8}  {'torchaudio fbank':>16}"
    )
    for r in results:
        print(
            f"{r['threads']:>7}  {r['dv']:>10.4f}  {r['onnxruntime']:>11.4f}  {r['dv'] / r['onnxruntime']:>6.2f}  "
            f"{r['dv fbank']:>8.4f}  {r['torchaudio fbank']:>16.4f}"
        )
    for name, value in REFERENCES.items():
        print(f"reference: {name}: RTF {value}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "speaker_rtf.json").write_text(json.dumps({"seconds": args.seconds, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
