"""Hostile inputs through every command: generated broken files, each must end in exit status 2 with
one line that names the file, no traceback, and nothing written (issue 15).

Every table dv reads and every kind of file a command takes is broken the ways editors, spreadsheets,
half-finished copies and wrong paths break them; the matrix below pairs each command with each break
that can reach it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvcli.cli import app
from dvcli.manifest import read_manifest, write_units
from dvcli.testing import make_corpus, make_joint_model, make_t2u_model
from stages.prepare import PrepareConfig
from stages.prepare import run as prepare

runner = CliRunner()
K = 50


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid inputs the hostile ones are made from."""
    root = tmp_path_factory.mktemp("good")
    make_corpus(root / "corpus", speakers=4, utterances=3, seconds=(1.0, 1.3))
    manifest = prepare(PrepareConfig(source=root / "corpus", out=root / "data", speakers_heldout=2)).manifest
    rng = random.Random(0)
    units = {u.id: [rng.randrange(K) for _ in range(int(u.duration * 50))] for u in read_manifest(manifest)}
    (root / "units").mkdir()
    write_units(root / "units" / "units.tsv", units)
    (root / "units" / "meta.json").write_text(json.dumps({"k": K, "frame_rate": 50.0}))
    rows = read_manifest(manifest)
    (root / "lists").mkdir()
    trials = root / "lists" / "trials.tsv"
    trials.write_text(
        "enrol\ttest\tlabel\n"
        + "".join(f"{a.audio}\t{b.audio}\t{int(a.speaker == b.speaker)}\n" for a, b in zip(rows, rows[1:]))
    )
    batch = root / "lists" / "batch.tsv"
    batch.write_text("id\ttext\tref\n" + "".join(f"b{i}\tsay this\t{r.audio}\n" for i, r in enumerate(rows[:2])))
    files = {
        "manifest": manifest,
        "units": root / "units" / "units.tsv",
        "model": make_joint_model(root / "joint", k=K) / "model.pt",
        "t2u": make_t2u_model(root / "t2u", k=K),
        "ref": rows[0].audio,
        "trials": trials,
        "batch": batch,
    }
    result = runner.invoke(
        app,
        [
            "--quiet",
            "synthesize",
            "--model",
            str(files["model"]),
            "--t2u",
            str(files["t2u"]),
            "--batch",
            str(batch),
            "-o",
            str(root / "synth"),
        ],
    )
    assert result.exit_code == 0, result.output
    files["synth"] = root / "synth" / "synth.tsv"
    result = runner.invoke(app, ["--quiet", "evaluate", "mos-kit", str(files["synth"]), "-o", str(root / "kit")])
    assert result.exit_code == 0, result.output
    files["kit"] = root / "kit"
    item = next(line.split("\t")[0] for line in (root / "kit" / "items.tsv").read_text().splitlines()[1:])
    files["ratings"] = root / "lists" / "ratings.csv"
    files["ratings"].write_text(f"rater,item,naturalness,similarity\nr1,{item},4,3\n")
    result = runner.invoke(
        app, ["--quiet", "extract-units", str(manifest), "-o", str(root / "feats"), "--features", "mfcc"]
    )
    assert result.exit_code == 0, result.output
    files["features"] = root / "feats"
    return files


# -- ways to break a file -------------------------------------------------------------------------


def _table_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _edit_cell(path: Path, column: str, value: str) -> str:
    lines = _table_lines(path)
    header = lines[0].split("\t")
    cells = lines[1].split("\t")
    cells[header.index(column)] = value
    return "\n".join([lines[0], "\t".join(cells), *lines[2:]]) + "\n"


def _renamed_first_column(data: bytes) -> bytes:
    """A byte-order mark, and the header's first column called ``key``."""
    cut = min(i for i in (data.find(b"\t"), data.find(b",")) if i >= 0)
    return b"\xef\xbb\xbfkey" + data[cut:]


BREAKS: dict[str, Callable[[Path, Path], bytes | None]] = {
    # name -> (good file, scratch folder) -> the broken file's bytes (None: the path is a folder)
    "empty": lambda good, tmp: b"",
    "random bytes": lambda good, tmp: random.Random(7).randbytes(3000),
    "latin-1 text": lambda good, tmp: good.read_bytes().replace(b"\n", " caf\xe9\n".encode("latin-1"), 2),
    "bom and renamed header": lambda good, tmp: _renamed_first_column(good.read_bytes()),
    "nan duration": lambda good, tmp: _edit_cell(good, "duration", "nan").encode(),
    "negative duration": lambda good, tmp: _edit_cell(good, "duration", "-3").encode(),
    "unit id beyond k": lambda good, tmp: good.read_bytes().replace(b"\t", b"\t999999 ", 1),
    "unit id not a number": lambda good, tmp: good.read_bytes().replace(b"\t", b"\tfive ", 1),
    "a folder": lambda good, tmp: None,
    # audio and checkpoints
    "truncated": lambda good, tmp: good.read_bytes()[: min(400, good.stat().st_size // 2)],
    "text under an audio name": lambda good, tmp: b"id\ttext\nthis is not audio\n",
    # other formats under a checkpoint's or audio file's name (the unpickler met opcodes it cannot follow)
    "plain text": lambda good, tmp: b"hello\n",
    "an image": lambda good, tmp: b"GIF89a\x01\x00\x01\x00\x00\x00\x00",
}

MANIFEST_BREAKS = ["empty", "random bytes", "latin-1 text", "bom and renamed header", "nan duration", "a folder"]
UNITS_BREAKS = ["empty", "random bytes", "latin-1 text", "unit id beyond k", "unit id not a number", "a folder"]
TABLE_BREAKS = ["empty", "random bytes", "latin-1 text", "bom and renamed header", "a folder"]
FILE_BREAKS = ["empty", "random bytes", "truncated", "text under an audio name", "plain text", "an image", "a folder"]
BREAKS_OF = {
    "manifest": MANIFEST_BREAKS,
    "units": UNITS_BREAKS,
    "trials": TABLE_BREAKS,
    "batch": TABLE_BREAKS,
    "synth": TABLE_BREAKS,
    "ratings": TABLE_BREAKS,
    "ref": FILE_BREAKS,
    "model": FILE_BREAKS,
}


def _broken(kind: str, good: Path, tmp: Path) -> Path:
    """The broken copy of ``good``, beside a copy of its folder's meta.json (so only the break differs)."""
    folder = tmp / "broken"
    folder.mkdir()
    if (good.parent / "meta.json").is_file():
        (folder / "meta.json").write_bytes((good.parent / "meta.json").read_bytes())
    path = folder / f"broken-{kind.replace(' ', '-')}{good.suffix}"
    content = BREAKS[kind](good, tmp)
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


# -- the commands ---------------------------------------------------------------------------------

# command -> (which input is broken, how to build the argument list from (inputs, out))
COMMANDS: dict[str, tuple[str, Callable[[dict[str, Path], Path], list[str]]]] = {
    "extract-units": (
        "manifest",
        lambda f, out: ["extract-units", str(f["manifest"]), "-o", str(out), "--features", "mfcc"],
    ),
    "pretrain-speaker": (
        "manifest",
        lambda f, out: ["pretrain-speaker", str(f["manifest"]), "-o", str(out), "--model", "tiny", "--steps", "1"],
    ),
    "train-joint (manifest)": ("manifest", lambda f, out: _train("train-joint", "-u", f, out, "--model", "tiny")),
    "train-joint (units)": ("units", lambda f, out: _train("train-joint", "-u", f, out, "--model", "tiny")),
    "train-t2u (manifest)": ("manifest", lambda f, out: _train("train-t2u", "--units", f, out, "--steps", "1")),
    "train-t2u (units)": ("units", lambda f, out: _train("train-t2u", "--units", f, out, "--steps", "1")),
    "evaluate refs": ("manifest", lambda f, out: ["evaluate", "refs", str(f["manifest"]), "-o", str(out)]),
    "evaluate speaker": (
        "manifest",
        lambda f, out: [
            "evaluate",
            "speaker",
            "--manifest",
            str(f["manifest"]),
            "-o",
            str(out),
            "--verifier",
            str(f["model"]),
        ],
    ),
    "synthesize (units)": (
        "units",
        lambda f, out: [
            "synthesize",
            "--model",
            str(f["model"]),
            "--units",
            str(f["units"]),
            "--ref",
            str(f["ref"]),
            "-o",
            str(out / "x.wav"),
        ],
    ),
    "synthesize (ref)": ("ref", lambda f, out: _say(f, out)),
    "synthesize (model)": ("model", lambda f, out: _say(f, out)),
    "synthesize (batch)": (
        "batch",
        lambda f, out: (
            ["synthesize", "--model", str(f["model"]), "--t2u", str(f["t2u"]), "--batch", str(f["batch"])]
            + ["-o", str(out)]
        ),
    ),
    "train-joint (speaker)": (
        "model",
        lambda f, out: (
            ["train-joint", str(f["manifest"]), "-u", str(f["units"]), "-s", str(f["model"])]
            + ["-o", str(out), "--model", "tiny"]
        ),
    ),
    "pretrain-speaker (init)": (
        "model",
        lambda f, out: (
            ["pretrain-speaker", str(f["manifest"]), "-o", str(out), "--init", str(f["model"])] + ["--steps", "0"]
        ),
    ),
    "evaluate speaker (trials)": ("trials", lambda f, out: _speaker_eval(f, out)),
    "evaluate speaker (verifier)": ("model", lambda f, out: _speaker_eval(f, out)),
    "evaluate run": (
        "synth",
        lambda f, out: (
            ["evaluate", "run", str(f["synth"]), "-o", str(out), "--metrics", "secs"] + ["--verifier", str(f["model"])]
        ),
    ),
}


COMMANDS["evaluate mos-kit"] = ("synth", lambda f, out: ["evaluate", "mos-kit", str(f["synth"]), "-o", str(out)])
COMMANDS["evaluate mos"] = (
    "ratings",
    lambda f, out: ["evaluate", "mos", str(f["ratings"]), "--kit", str(f["kit"]), "-o", str(out)],
)


def _train(command: str, units_option: str, f: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [command, str(f["manifest"]), units_option, str(f["units"]), "-o", str(out), *extra]


def _say(f: dict[str, Path], out: Path) -> list[str]:
    return ["synthesize", "--model", str(f["model"]), "--t2u", str(f["t2u"]), "--ref", str(f["ref"])] + [
        "--text",
        "hello there",
        "-o",
        str(out / "x.wav"),
    ]


def _speaker_eval(f: dict[str, Path], out: Path) -> list[str]:
    return ["evaluate", "speaker", "--trials", str(f["trials"]), "-o", str(out), "--verifier", str(f["model"])]


CASES = [(command, kind) for command, (input_name, _) in COMMANDS.items() for kind in BREAKS_OF[input_name]]


def _refused(args: list[str], *, naming: str) -> None:
    """``dv args`` exits 2 with one ``dv: error`` line that names ``naming``, and no traceback."""
    result = runner.invoke(app, ["--quiet", *args])
    output = result.output
    assert result.exit_code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("dv: error")]
    assert len(errors) == 1 and naming in errors[0], output  # one line, naming the file
    assert "Traceback" not in output and "internal error" not in output


@pytest.mark.parametrize("command,kind", CASES, ids=[f"{c}: {k}" for c, k in CASES])
def test_a_broken_input_is_one_line_exit_2_and_nothing_written(
    good: dict[str, Path], tmp_path: Path, command: str, kind: str
) -> None:
    input_name, build = COMMANDS[command]
    files = dict(good)
    files[input_name] = broken = _broken(kind, good[input_name], tmp_path)
    out = tmp_path / "out"
    _refused(build(files, out), naming=broken.name)
    leftovers = {p.name for p in tmp_path.iterdir()} - {"broken"}
    assert not leftovers, leftovers  # nothing written, not even the output lock's file


@pytest.mark.parametrize("kind", ["random bytes", "latin-1 text"])
@pytest.mark.parametrize("layout", ["folder (metadata.tsv)", "ljspeech (metadata.csv)"])
def test_prepare_with_a_broken_transcript_table(good: dict[str, Path], tmp_path: Path, layout: str, kind: str) -> None:
    audio = good["ref"]
    corpus = tmp_path / "corpus"
    if layout.startswith("folder"):
        (corpus / "spk1").mkdir(parents=True)
        for name in ("a.wav", "b.wav"):
            (corpus / "spk1" / name).write_bytes(audio.read_bytes())
        table = corpus / "spk1" / "metadata.tsv"
        table.write_text("a.wav\thello there\nb.wav\tgood morning\n", encoding="utf-8")
    else:
        (corpus / "wavs").mkdir(parents=True)
        for name in ("a.wav", "b.wav"):
            (corpus / "wavs" / name).write_bytes(audio.read_bytes())
        table = corpus / "metadata.csv"
        table.write_text("a|hello there|hello there\nb|good morning|good morning\n", encoding="utf-8")
    table.write_bytes(BREAKS[kind](table, tmp_path))
    _refused(["prepare", str(corpus), "-o", str(tmp_path / "out")], naming=table.name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["empty", "random bytes", "latin-1 text", "bom and renamed header"])
def test_cluster_with_a_broken_feature_index(good: dict[str, Path], tmp_path: Path, kind: str) -> None:
    import shutil

    features = tmp_path / "feats"
    shutil.copytree(good["features"], features)
    index = features / "index.tsv"
    index.write_bytes(BREAKS[kind](good["features"] / "index.tsv", tmp_path))
    _refused(["cluster", str(features), "-o", str(tmp_path / "out"), "--k", "4"], naming="index.tsv")
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.lock").exists()
