"""Speaker-verification evaluation: trial lists, EER and minDCF, clean vs noisy, embedding export.

A trial is ``(enroll id, test id, target)``. Lists are generated from utterances (all pairs, or a
sample with every target pair first when there are too many), or read from a TSV ``enroll test
label``. Noisy conditions corrupt the *test* side of each trial (enrollment stays clean) at a
fixed SNR; an utterance gets the same noise draw at every SNR, so the conditions differ only in
level. Scores are cosine similarities.

Anything that turns waveforms into embeddings works as the encoder: a callable
``embed(list of (T,) tensors) -> (N, D)`` (e.g. :meth:`dvcli.speaker.SpeakerFrontend.embed`).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from dvcli.atomic import atomic_path, atomic_write_text, write_json
from dvcli.audio import load_audio
from dvcli.augment import Augmenter
from dvcli.errors import UserError
from dvcli.logs import track
from dvcli.manifest import Utterance
from dvcli.metrics import eer, min_dcf
from dvcli.training import step_generator

#: ``embed(clips) -> (N, D)``: the one thing evaluation needs from an encoder.
EmbedFn = Callable[[Sequence[torch.Tensor]], torch.Tensor]
Trial = tuple[str, str, int]


def make_trials(utterances: Sequence[Utterance], *, max_trials: int = 20000, seed: int = 0) -> list[Trial]:
    """Verification trials among ``utterances``: every pair when there are at most ``max_trials``,
    else all target pairs (up to half the budget) plus randomly drawn non-target pairs.

    Raises:
        UserError: fewer than two speakers, or no speaker with two utterances.
    """
    ids = [(u.id, u.speaker) for u in sorted(utterances, key=lambda u: u.id)]
    speakers = {s for _, s in ids}
    if len(speakers) < 2:
        raise UserError(f"trials need at least two speakers, got {len(speakers)}")
    n = len(ids)
    if n * (n - 1) // 2 <= max_trials:
        trials = [(a, b, int(sa == sb)) for (a, sa), (b, sb) in itertools.combinations(ids, 2)]
    else:
        rng = random.Random(seed)
        targets = [(a, b, 1) for (a, sa), (b, sb) in itertools.combinations(ids, 2) if sa == sb]
        if len(targets) > max_trials // 2:
            targets = rng.sample(targets, max_trials // 2)
        chosen: set[tuple[str, str]] = set()
        while len(chosen) < max_trials - len(targets):
            (a, sa), (b, sb) = rng.sample(ids, 2)
            if sa != sb:
                chosen.add((min(a, b), max(a, b)))
        trials = sorted(targets) + [(a, b, 0) for a, b in sorted(chosen)]
    if not any(label for *_, label in trials):
        raise UserError("trials need a speaker with at least two utterances (no same-speaker pair)")
    return trials


def write_trials(path: Path, trials: Sequence[Trial]) -> None:
    """TSV ``enroll<TAB>test<TAB>label`` (1 = same speaker), no header."""
    atomic_write_text(path, "".join(f"{a}\t{b}\t{label}\n" for a, b, label in trials))


def read_trials(path: Path, known: Mapping[str, object] | None = None) -> list[Trial]:
    """Read a trial TSV (``enroll test label``; label 1/0 or target/nontarget).

    Raises:
        UserError: missing file, a malformed line, or an id not in ``known``.
    """
    if not path.is_file():
        raise UserError(f"{path}: trial list not found")
    trials = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or fields[2].lower() not in ("1", "0", "target", "nontarget"):
            raise UserError(f"{path}:{lineno}: expected 'enroll test label' with label 1/0 or target/nontarget")
        for uid in fields[:2]:
            if known is not None and uid not in known:
                raise UserError(f"{path}:{lineno}: utterance '{uid}' is not in the manifest")
        trials.append((fields[0], fields[1], int(fields[2].lower() in ("1", "target"))))
    if not trials:
        raise UserError(f"{path}: trial list is empty")
    return trials


def cosine_scores(embeddings: Mapping[str, torch.Tensor], trials: Sequence[Trial], test: Mapping[str, torch.Tensor] | None = None) -> np.ndarray:
    """Cosine similarity per trial; test-side embeddings from ``test`` when given (noisy conditions)."""
    test = test if test is not None else embeddings
    a = torch.stack([embeddings[e] for e, _, _ in trials]).float()
    b = torch.stack([test[t] for _, t, _ in trials]).float()
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).cpu().numpy()


@dataclasses.dataclass
class ConditionResult:
    """EER and minDCF of one trial list under one condition."""

    eer: float  # equal error rate, 0..1
    min_dcf: float  # minimum detection cost at P_target = 0.01
    trials: int
    targets: int


def _condition_name(snr: float | None) -> str:
    return "clean" if snr is None else f"{snr:g} dB"


def evaluate_trials(
    embed: EmbedFn,
    sets: Mapping[str, tuple[Sequence[Utterance], Sequence[Trial]]],
    *,
    snrs: Sequence[float] = (10.0, 5.0, 0.0),
    augmenter: Augmenter | None = None,
    seed: int = 0,
    batch: int = 16,
) -> dict[str, dict[str, ConditionResult]]:
    """EER/minDCF of every trial set, clean and with noisy test sides at each SNR.

    Args:
        embed: the encoder, ``clips -> (N, D)``.
        sets: name -> (utterances the trials use, trials).
        snrs: noisy conditions (dB); noise from ``augmenter`` (required when ``snrs`` is not empty).
        seed: seeds the noise draw of each utterance.

    Returns:
        set name -> condition name (``clean``, ``10 dB``...) -> result.
    """
    if snrs and augmenter is None:
        raise ValueError("noisy conditions need an augmenter")
    results: dict[str, dict[str, ConditionResult]] = {}
    for name, (utterances, trials) in sets.items():
        used = sorted({e for e, _, _ in trials} | {t for _, t, _ in trials})
        by_id = {u.id: u for u in utterances}
        tested = {t for _, t, _ in trials}
        position = {uid: i for i, uid in enumerate(used)}
        clean: dict[str, torch.Tensor] = {}
        noisy: dict[float, dict[str, torch.Tensor]] = {snr: {} for snr in snrs}
        for start in track(range(0, len(used), batch), f"embedding {name}"):
            ids = used[start : start + batch]
            wavs = [load_audio(by_id[uid].audio) for uid in ids]
            for uid, emb in zip(ids, embed(wavs)):
                clean[uid] = emb
            for snr in snrs:
                rows = [(uid, wav) for uid, wav in zip(ids, wavs) if uid in tested]
                corrupted = [_noisy(augmenter, wav, snr, seed, position[uid]) for uid, wav in rows]  # type: ignore[arg-type]
                for (uid, _), emb in zip(rows, embed(corrupted) if corrupted else []):
                    noisy[snr][uid] = emb
        labels = np.array([label for *_, label in trials])
        results[name] = {}
        for snr in (None, *snrs):
            scores = cosine_scores(clean, trials, None if snr is None else noisy[snr])
            results[name][_condition_name(snr)] = ConditionResult(
                eer=eer(scores, labels)[0], min_dcf=min_dcf(scores, labels), trials=len(trials), targets=int(labels.sum())
            )
    return results


def _noisy(augmenter: Augmenter, wav: torch.Tensor, snr: float, seed: int, index: int) -> torch.Tensor:
    # Same generator for every SNR: one noise excerpt per utterance, scaled to each level.
    gen = step_generator(seed, index, rank=0)
    return augmenter.add_noise(wav[None], snr, gen)[0]


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


def write_results(folder: Path, results: Mapping[str, Mapping[str, ConditionResult]], titles: Mapping[str, str]) -> None:
    """``folder/eer.json`` (numbers) and ``folder/eer.md`` (the table)."""
    write_json(
        folder / "eer.json",
        {name: {cond: dataclasses.asdict(r) for cond, r in row.items()} for name, row in results.items()},
    )
    atomic_write_text(folder / "eer.md", "# Speaker verification\n\n" + results_table(results, titles))


def export_embeddings(embed: EmbedFn, utterances: Sequence[Utterance], folder: Path, *, batch: int = 16) -> Path:
    """Embed every utterance: ``folder/embeddings.npy`` ``(N, D)`` float32 and ``embeddings.tsv``
    (``row``, ``id``, ``speaker``, ``split``; row i of the TSV is row i of the array). Returns the .npy path.
    """
    rows: list[np.ndarray] = []
    for start in track(range(0, len(utterances), batch), "exporting embeddings"):
        chunk = utterances[start : start + batch]
        rows.append(embed([load_audio(u.audio) for u in chunk]).float().cpu().numpy())
    array = np.concatenate(rows).astype(np.float32)
    with atomic_path(folder / "embeddings.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)
    index = "row\tid\tspeaker\tsplit\n" + "".join(
        f"{i}\t{u.id}\t{u.speaker}\t{u.split}\n" for i, u in enumerate(utterances)
    )
    atomic_write_text(folder / "embeddings.tsv", index)
    return folder / "embeddings.npy"
