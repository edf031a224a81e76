"""Speaker verification, the one path both ``dv pretrain-speaker`` and ``dv evaluate speaker`` use.

- A trial is two audio files and a label (:class:`Trial`). Lists are drawn from utterances
  (:func:`make_trials`) or read from a TSV (:func:`read_trials`), and written in the same format
  (:func:`write_trials`): a header ``enrol test label condition``, then one trial per line; ``enrol``
  and ``test`` are audio paths relative to the file (or absolute), or utterance ids when a manifest
  is given; ``label`` 1 (same speaker) or 0 (``target``/``nontarget`` also read); ``condition``
  optional (default ``clean``). Headerless ``enrol test label`` lines (older trial files) are read too.
- The noisy conditions corrupt the *test* side of each trial (enrolment stays clean) with
  :func:`noisy_copy`: clips from a noise folder, else white Gaussian noise, mixed at the SNR with the
  training augmenter's gain (:func:`dvcli.evaluation.noise.mix_at_snr`), scaled down as a whole if it
  would clip. A file gets the same noise excerpt at every SNR, so conditions differ only in level.
- Scores are cosine similarities; EER and minDCF come from :mod:`dvcli.metrics`.

Anything that turns waveforms into embeddings works as the encoder: ``embed(list of (T,) clips) ->
(N, D)`` (:meth:`dvcli.speaker.encoder.SpeakerFrontend.embed`, or a verifier of :mod:`dvcli.evaluation.verifiers`).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os
import random
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from dvcli.atomic import atomic_path, atomic_write_text, write_json
from dvcli.audio import load_audio
from dvcli.errors import UserError
from dvcli.evaluation.noise import NoiseSource, mix_at_snr
from dvcli.logs import track
from dvcli.manifest import Utterance, read_utf8
from dvcli.metrics import eer, min_dcf

#: ``embed(clips) -> (N, D)``: the one thing evaluation needs from an encoder.
EmbedFn = Callable[[Sequence[np.ndarray]], "torch.Tensor | np.ndarray"]
#: The trial file's columns (``condition`` may be left out when reading).
TRIAL_COLUMNS = ("enrol", "test", "label", "condition")
CLEAN = "clean"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One verification trial: is ``test`` spoken by ``enrol``'s speaker?"""

    enrol: Path  # enrolment audio
    test: Path  # test audio (the side the noisy conditions corrupt)
    label: int  # 1 = same speaker (target), 0 = different speakers
    condition: str = CLEAN  # a clean trial list may group trials under names of its own


def condition_name(snr: float | None) -> str:
    """``clean``, or ``noisy 5 dB`` for noise added at 5 dB SNR (as ``dv evaluate run`` names them)."""
    return CLEAN if snr is None else f"noisy {snr:g} dB"


def make_trials(
    utterances: Sequence[Utterance], *, max_trials: int = 20000, per_speaker: int = 0, seed: int = 0
) -> list[Trial]:
    """Verification trials among ``utterances``, seeded.

    With ``per_speaker`` 0: every pair when there are at most ``max_trials``, else all target pairs
    (up to half the budget) plus randomly drawn non-target pairs. With ``per_speaker`` N: for every
    speaker with two utterances, N same-speaker pairs, each with a different-speaker pair of the same
    enrolment clip.

    Raises:
        UserError: fewer than two speakers, or no speaker with two utterances.
    """
    ordered = sorted(utterances, key=lambda u: u.id)
    speakers = {u.speaker for u in ordered}
    if len(speakers) < 2:
        raise UserError(f"trials need at least two speakers, got {len(speakers)}")
    rng = random.Random(seed)
    if per_speaker > 0:
        return _per_speaker_trials(ordered, per_speaker, rng)
    n = len(ordered)
    if n * (n - 1) // 2 <= max_trials:
        pairs = [(a, b, int(a.speaker == b.speaker)) for a, b in itertools.combinations(ordered, 2)]
    else:
        targets = [(a, b, 1) for a, b in itertools.combinations(ordered, 2) if a.speaker == b.speaker]
        if len(targets) > max_trials // 2:
            targets = rng.sample(targets, max_trials // 2)
        chosen: set[tuple[int, int]] = set()
        while len(chosen) < max_trials - len(targets):
            i, j = rng.sample(range(n), 2)
            if ordered[i].speaker != ordered[j].speaker:
                chosen.add((min(i, j), max(i, j)))
        targets.sort(key=lambda t: (t[0].id, t[1].id))
        pairs = targets + [(ordered[i], ordered[j], 0) for i, j in sorted(chosen)]
    if not any(label for *_, label in pairs):
        raise UserError("trials need a speaker with at least two utterances (no same-speaker pair)")
    return [Trial(Path(a.audio), Path(b.audio), label) for a, b, label in pairs]


def _per_speaker_trials(ordered: Sequence[Utterance], per_speaker: int, rng: random.Random) -> list[Trial]:
    by_speaker: dict[str, list[Path]] = {}
    for u in ordered:
        by_speaker.setdefault(u.speaker, []).append(Path(u.audio))
    speakers = sorted(s for s, clips in by_speaker.items() if len(clips) >= 2)
    if not speakers:
        raise UserError("trials need a speaker with at least two utterances (no same-speaker pair)")
    trials = []
    for s in speakers:
        pairs = list(itertools.combinations(by_speaker[s], 2))
        for enrol, test in rng.sample(pairs, min(per_speaker, len(pairs))):
            trials.append(Trial(enrol, test, 1))
            other = rng.choice([o for o in sorted(by_speaker) if o != s])
            trials.append(Trial(enrol, rng.choice(by_speaker[other]), 0))
    return trials


def write_trials(path: Path, trials: Iterable[Trial]) -> None:
    """Write ``trials`` as a trial TSV (header ``enrol test label condition``), atomically.

    Audio paths are written relative to the file's folder, as manifests store them.
    """
    path = Path(path)
    base = path.parent.resolve()

    def rel(p: Path) -> str:
        return os.path.relpath(Path(p).resolve(), base)

    rows = "".join(f"{rel(t.enrol)}\t{rel(t.test)}\t{t.label}\t{t.condition}\n" for t in trials)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\t".join(TRIAL_COLUMNS) + "\n" + rows)


def read_trials(path: Path, ids: Mapping[str, Path] | None = None) -> list[Trial]:
    """Read a trial TSV (see the module docstring for the format).

    Args:
        path: the file.
        ids: utterance id -> audio path (a manifest's), so that trials may name utterances by id.

    Raises:
        UserError: a missing file, header columns or audio; a malformed line; no trials.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: trial list not found")
    lines = read_utf8(path).splitlines()
    rows = [(n, line.split("\t") if "\t" in line else line.split()) for n, line in enumerate(lines, 1) if line.strip()]
    if not rows:
        raise UserError(f"{path}: trial list is empty")
    header = [c.strip().lower() for c in rows[0][1]]
    if header and header[0] in ("enrol", "enroll"):
        header[0] = "enrol"
        missing = [c for c in TRIAL_COLUMNS[:3] if c not in header]
        if missing:
            raise UserError(
                f"{path}: trial list header needs columns enrol, test, label (missing {', '.join(missing)})"
            )
        columns, rows = header, rows[1:]
    else:  # headerless: enrol test label
        columns = list(TRIAL_COLUMNS[:3])
    base = path.parent.resolve()

    def audio(value: str, lineno: int) -> Path:
        if ids is not None and value in ids:
            return Path(ids[value])
        candidate = Path(os.path.normpath(Path(value) if Path(value).is_absolute() else base / value))
        if candidate.is_file():
            return candidate
        known = " or an utterance id of the manifest" if ids is not None else ""
        raise UserError(f"{path}:{lineno}: '{value}' is neither an audio file (relative to the list){known}")

    trials = []
    for lineno, fields in rows:
        if len(fields) < len(columns) - ("condition" in columns) or len(fields) > len(columns):
            raise UserError(f"{path}:{lineno}: expected {len(columns)} fields ({' '.join(columns)}), got {len(fields)}")
        row = dict(zip(columns, (f.strip() for f in fields)))
        label = row["label"].lower()
        if label not in ("1", "0", "target", "nontarget"):
            raise UserError(
                f"{path}:{lineno}: label must be 1 (same speaker) or 0 (or target/nontarget), got '{row['label']}'"
            )
        trials.append(
            Trial(
                audio(row["enrol"], lineno),
                audio(row["test"], lineno),
                int(label in ("1", "target")),
                row.get("condition") or CLEAN,
            )
        )
    if not trials:
        raise UserError(f"{path}: trial list has no trials")
    return trials


def noisy_copy(wav: np.ndarray, snr: float, noise: NoiseSource, *, seed: int, key: str) -> np.ndarray:
    """``wav`` with noise at ``snr`` dB: the same excerpt of the same noise for ``key`` at every SNR.

    Args:
        wav: ``(T,)`` float32 at 16 kHz.
        snr: signal-to-noise ratio, dB.
        noise: where the noise comes from (a folder's clips, or white noise).
        seed, key: seed the draw (the file and the offset), e.g. the run's seed and the audio path.
    """
    rng = np.random.default_rng(zlib.crc32(f"{seed}/{key}".encode()))
    return mix_at_snr(wav, noise.sample(len(wav), rng), snr, rng)


def score_trials(
    embed: EmbedFn,
    trials: Sequence[Trial],
    *,
    snrs: Sequence[float] = (),
    noise: NoiseSource | None = None,
    seed: int = 0,
    batch: int = 16,
    title: str = "trials",
) -> dict[str, np.ndarray]:
    """Cosine scores of every trial, as listed, then with a noisy test side at each SNR.

    Returns:
        condition -> scores: the trials' own conditions (``clean`` unless the list says otherwise),
        then ``noisy {snr} dB`` for every SNR, each over the list's ``clean`` trials. A clip the
        encoder cannot embed (silence) scores NaN.
    """
    noise = noise or NoiseSource(None)
    clean_trials = [t for t in trials if t.condition == CLEAN]
    paths = sorted({p for t in trials for p in (t.enrol, t.test)})
    tested = {t.test for t in clean_trials}
    clean: dict[Path, np.ndarray] = {}
    noisy: dict[float, dict[Path, np.ndarray]] = {snr: {} for snr in snrs}
    for start in track(range(0, len(paths), batch), f"embedding {title}"):
        chunk = paths[start : start + batch]
        wavs = [load_audio(p).numpy() for p in chunk]
        for p, e in zip(chunk, _rows(embed(wavs))):
            clean[p] = e
        for snr in snrs:
            rows = [(p, w) for p, w in zip(chunk, wavs) if p in tested]
            if rows:
                copies = [noisy_copy(w, snr, noise, seed=seed, key=str(p)) for p, w in rows]
                for (p, _), e in zip(rows, _rows(embed(copies))):
                    noisy[snr][p] = e
    scores: dict[str, np.ndarray] = {}
    for condition in dict.fromkeys(t.condition for t in trials):
        chosen = [t for t in trials if t.condition == condition]
        scores[condition] = _cosine([clean[t.enrol] for t in chosen], [clean[t.test] for t in chosen])
    for snr in snrs:
        scores[condition_name(snr)] = _cosine(
            [clean[t.enrol] for t in clean_trials], [noisy[snr][t.test] for t in clean_trials]
        )
    return scores


def _rows(embeddings: torch.Tensor | np.ndarray) -> list[np.ndarray]:
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().float().cpu().numpy()
    return list(np.asarray(embeddings, dtype=np.float64))


def _cosine(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    if not a:
        return np.zeros(0)
    x, y = np.stack(a), np.stack(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))


@dataclasses.dataclass
class ConditionResult:
    """EER and minDCF of one trial list under one condition."""

    eer: float  # equal error rate, 0..1
    min_dcf: float  # minimum detection cost at p_target
    threshold: float  # the cosine score at the EER
    trials: int  # trials scored (NaN scores left out)
    targets: int  # of which same-speaker

    @property
    def nontargets(self) -> int:
        return self.trials - self.targets


def trials_of(condition: str, trials: Sequence[Trial]) -> list[Trial]:
    """The trials a condition of :func:`score_trials` scored, in order: the list's own trials of that
    condition, or (for a ``noisy`` condition) its clean trials."""
    return [t for t in trials if t.condition == condition] or [t for t in trials if t.condition == CLEAN]


def condition_results(
    scores: Mapping[str, np.ndarray], trials: Sequence[Trial], *, p_target: float = 0.01
) -> dict[str, ConditionResult]:
    """EER/minDCF per condition of :func:`score_trials`' output.

    Raises:
        UserError: a condition without both same- and different-speaker trials.
    """
    results = {}
    for condition, s in scores.items():
        labels = np.array([t.label for t in trials_of(condition, trials)])
        ok = np.isfinite(s)
        try:
            rate, threshold = eer(s[ok], labels[ok])
            dcf = min_dcf(s[ok], labels[ok], p_target=p_target)
        except ValueError:
            raise UserError(
                f"condition '{condition}': trials need both same-speaker and different-speaker pairs"
            ) from None
        results[condition] = ConditionResult(rate, dcf, threshold, int(ok.sum()), int(labels[ok].sum()))
    return results


def evaluate_trials(
    embed: EmbedFn,
    sets: Mapping[str, Sequence[Trial]],
    *,
    snrs: Sequence[float] = (10.0, 5.0, 0.0),
    noise: NoiseSource | None = None,
    seed: int = 0,
    batch: int = 16,
    p_target: float = 0.01,
) -> dict[str, dict[str, ConditionResult]]:
    """EER/minDCF of every trial set, clean and with noisy test sides at each SNR.

    Args:
        embed: the encoder, ``clips -> (N, D)``.
        sets: name -> trials.
        snrs: noisy conditions (dB).
        noise: noise clips (default: white noise); see :func:`noisy_copy`.
        seed: seeds the noise draw of each file.

    Returns:
        set name -> condition name (``clean``, ``noisy 10 dB``...) -> result.
    """
    return {
        name: condition_results(
            score_trials(embed, trials, snrs=snrs, noise=noise, seed=seed, batch=batch, title=name),
            trials,
            p_target=p_target,
        )
        for name, trials in sets.items()
    }


def results_table(results: Mapping[str, Mapping[str, ConditionResult]], titles: Mapping[str, str] | None = None) -> str:
    """A markdown table: one row per trial set, one column per condition, ``EER % (minDCF)`` cells."""
    titles = titles or {}
    conditions = list(next(iter(results.values())).keys()) if results else []
    lines = [
        "| trials | " + " | ".join(conditions) + " |",
        "|---|" + "---|" * len(conditions),
    ]
    for name, row in results.items():
        first = next(iter(row.values()))
        label = f"{titles.get(name, name)} ({first.trials} trials, {first.targets} target)"
        cells = [f"{100 * r.eer:.2f}% ({r.min_dcf:.3f})" for r in row.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nCells: EER (minDCF at P_target = 0.01). Noisy columns corrupt the test side only.\n"


def write_results(
    folder: Path, results: Mapping[str, Mapping[str, ConditionResult]], titles: Mapping[str, str]
) -> None:
    """``folder/eer.json`` (numbers) and ``folder/eer.md`` (the table)."""
    write_json(
        folder / "eer.json",
        {name: {cond: dataclasses.asdict(r) for cond, r in row.items()} for name, row in results.items()},
    )
    atomic_write_text(folder / "eer.md", "# Speaker verification\n\n" + results_table(results, titles))


def write_scores(path: Path, trials: Sequence[Trial], scores: Mapping[str, np.ndarray]) -> None:
    """``scores.tsv``: ``enrol test label condition score`` for every scored trial and condition."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["enrol", "test", "label", "condition", "score"])
        for condition, values in scores.items():
            for t, s in zip(trials_of(condition, trials), values):
                w.writerow([t.enrol, t.test, t.label, condition, f"{s:.6f}"])


def export_embeddings(embed: EmbedFn, utterances: Sequence[Utterance], folder: Path, *, batch: int = 16) -> Path:
    """Embed every utterance: ``folder/embeddings.npy`` ``(N, D)`` float32 and ``embeddings.tsv``
    (``row``, ``id``, ``speaker``, ``split``; row i of the TSV is row i of the array). Returns the .npy path.
    """
    rows: list[np.ndarray] = []
    for start in track(range(0, len(utterances), batch), "exporting embeddings"):
        chunk = utterances[start : start + batch]
        rows.append(np.stack(_rows(embed([load_audio(u.audio).numpy() for u in chunk]))))
    array = np.concatenate(rows).astype(np.float32)
    with atomic_path(folder / "embeddings.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)
    index = "row\tid\tspeaker\tsplit\n" + "".join(
        f"{i}\t{u.id}\t{u.speaker}\t{u.split}\n" for i, u in enumerate(utterances)
    )
    atomic_write_text(folder / "embeddings.tsv", index)
    return folder / "embeddings.npy"


def plot_det(
    scores: Mapping[str, np.ndarray], trials: Sequence[Trial], results: Mapping[str, ConditionResult], path: Path
) -> bool:
    """DET curves (Martin et al. 1997: false rejects against false accepts on normal-deviate axes),
    one per condition with its EER marked, as a PNG. False (nothing written) without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    from statistics import NormalDist

    from dvcli.metrics import det_curve

    probit = np.vectorize(NormalDist().inv_cdf)
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8])

    def axis(rates: np.ndarray) -> np.ndarray:
        return probit(np.clip(rates, 5e-4, 1 - 5e-4))

    fig = Figure(figsize=(4.8, 4.6), dpi=110)
    ax = fig.add_subplot()
    for condition, s in scores.items():
        labels = np.array([t.label for t in trials_of(condition, trials)])
        ok = np.isfinite(s)
        far, frr = det_curve(s[ok], labels[ok])
        eer_rate = results[condition].eer
        line = ax.plot(axis(far), axis(frr), label=f"{condition} (EER {100 * eer_rate:.1f}%)")
        ax.plot(axis(np.array([eer_rate])), axis(np.array([eer_rate])), "o", color=line[0].get_color())
    labels_pct = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(axis(ticks), labels_pct)
    ax.set_yticks(axis(ticks), labels_pct)
    ax.set_xlabel("false accepts (%)")
    ax.set_ylabel("false rejects (%)")
    ax.set_title("DET curves (normal-deviate axes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(str(path))
    return True
