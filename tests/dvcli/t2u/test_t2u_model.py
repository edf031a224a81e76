"""Text-to-unit building blocks: unit vocabulary, tokenizer, loss, length cap, data pairing."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dvcli.errors import UserError
from dvcli.manifest import Utterance, read_manifest, write_units
from dvcli.t2u.data import collate, pair_examples, split_by_sentence, unit_vocabulary_size
from dvcli.t2u.inference import TextToUnit, unreadable_characters
from dvcli.t2u.model import PRESETS, UnitLoss, mbart_config, restrict_output, set_generation_defaults
from dvcli.t2u.tokenizer import NORMALIZED_ALPHABET, add_unit_tokens, train_text_tokenizer
from dvcli.t2u.vocab import UnitVocab
from dvcli.testing import make_sentences, make_t2u_data, make_t2u_model, pseudo_units
from dvcli.text import normalize_text
from dvcli.units.sequences import UnitSource, deduplicate, read_unit_source


def test_pseudo_units_are_deterministic_with_runs_and_realistic_lengths() -> None:
    text = "The quiet river waits behind the old stone bridge."
    units = pseudo_units(text, k=50)
    assert units == pseudo_units(text, k=50)
    dedup, _ = deduplicate(units)
    assert len(units) > len(dedup)  # frame-level runs, as 50 Hz units have
    assert all(a != b for a, b in zip(dedup, dedup[1:]))
    assert 1.5 * len(normalize_text(text)) < len(dedup) < 2 * len(normalize_text(text))
    assert max(units) < 50


def test_unit_vocab_maps_both_ways_and_round_trips(tmp_path: Path) -> None:
    vocab = UnitVocab(k=10, offset=40, eos_id=2, pad_id=1, units_per_token=2.0, extra_units=3)
    assert vocab.target_ids == [2] + list(range(40, 50))
    assert vocab.units_of(vocab.tokens_of([3, 0, 9]) + [2, 45]) == [3, 0, 9]
    assert vocab.units_of([41, 7, 42]) == [1, 2]  # a text token is skipped, not mapped
    assert vocab.max_units(5) == 13
    vocab.save(tmp_path)
    assert UnitVocab.load(tmp_path) == vocab
    vocab.kmeans_sha256 = "a" * 64
    vocab.check_compatible(10, "a" * 64)
    vocab.check_compatible(10, None)  # a side that does not know its k-means model is trusted on k alone
    with pytest.raises(UserError, match="reads 12 units"):
        vocab.check_compatible(12)
    with pytest.raises(UserError, match="different k-means"):
        vocab.check_compatible(10, "b" * 64)
    with pytest.raises(UserError, match="not a dv text-to-unit folder"):
        UnitVocab.load(tmp_path / "nowhere")


def test_tokenizer_matches_sentencepiece_and_covers_the_alphabet() -> None:
    import sentencepiece as spm

    texts = [normalize_text(s) for s in make_sentences(20)]
    tokenizer, model_bytes = train_text_tokenizer(texts, 120)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    unseen = ["zebra quartz vexing jigs", "it's a puzzle"]
    for text in texts + unseen:
        assert tokenizer(text)["input_ids"] == sp.encode(text) + [tokenizer.eos_token_id]
    # Every character the normaliser can leave is a piece: no normalised text maps to <unk>.
    ids = tokenizer(" ".join(NORMALIZED_ALPHABET))["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    offset = add_unit_tokens(tokenizer, 7)
    assert offset == sp.get_piece_size() and len(tokenizer) == offset + 7
    assert tokenizer.convert_tokens_to_ids("<u6>") == offset + 6
    with pytest.raises(UserError, match="already has unit tokens"):
        add_unit_tokens(tokenizer, 7)


def _tiny_model(vocab: UnitVocab, vocab_tokens: int) -> torch.nn.Module:
    from transformers import MBartForConditionalGeneration

    torch.manual_seed(0)
    model = MBartForConditionalGeneration(
        mbart_config(PRESETS["tiny"], vocab_tokens, dropout=0.0, pad_id=vocab.pad_id, eos_id=vocab.eos_id, bos_id=0)
    )
    restrict_output(model, vocab)
    set_generation_defaults(model, vocab)
    return model.eval()


def test_unit_loss_equals_transformers_full_vocabulary_loss() -> None:
    vocab = UnitVocab(k=12, offset=30, eos_id=2, pad_id=1)
    model = _tiny_model(vocab, 42)
    sources = [[5, 6, 7, 2], [8, 9, 2]]
    units = [[3, 1, 4, 1, 5], [9, 2]]
    batch = collate(sources, units, vocab)
    loss, correct = UnitLoss(model, vocab, label_smoothing=0.0)(**dataclasses.asdict(batch))
    # Reference: transformers' own loss over the full vocabulary, labels as token ids.
    full_labels = batch.labels.clone()
    real = full_labels >= 0
    full_labels[real] = torch.tensor(vocab.target_ids)[full_labels[real]]
    reference = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        decoder_input_ids=batch.decoder_input_ids,
        decoder_attention_mask=batch.decoder_attention_mask,
        labels=full_labels,
    )
    torch.testing.assert_close(loss, reference.loss, rtol=1e-5, atol=1e-5)
    argmax = reference.logits.argmax(-1)
    assert int(correct) == int(((argmax == full_labels) & real).sum())
    # The masked text tokens can never win: the decoder's argmax is a unit or </s>.
    assert set(argmax.flatten().tolist()) <= set(vocab.target_ids)


def test_beam_search_respects_the_length_cap_and_never_returns_nothing() -> None:
    vocab = UnitVocab(k=12, offset=30, eos_id=2, pad_id=1, dedup=False, units_per_token=1.0, extra_units=2)
    model = _tiny_model(vocab, 42)
    t2u = TextToUnit(model, None, vocab)
    sources = [[5, 2], [5, 6, 7, 8, 9, 10, 2], [11, 12, 13, 2]]
    for beams in (1, 3):
        out = t2u.units_from_tokens(sources, beams=beams, batch_size=2)
        assert len(out) == 3
        for src, units in zip(sources, out):
            assert 1 <= len(units) <= vocab.max_units(len(src))
            assert all(0 <= u < vocab.k for u in units)
    # Batching and sorting do not change what each sentence gets.
    assert t2u.units_from_tokens(sources, beams=3, batch_size=1) == t2u.units_from_tokens(sources, beams=3)


def test_decoding_ignores_the_folders_generation_settings(tmp_path: Path) -> None:
    """Settings a folder's generation_config.json carries (a pretrained mBART brings its own) and
    transformers' defaults do not reach dv's decoding: every search setting is explicit."""
    folder = make_t2u_model(tmp_path / "t2u", units_per_token=1.5)
    texts = ["the quiet river", "a small fox jumps over the bridge"]
    expected = {beams: TextToUnit.load(folder).units(texts, beams=beams) for beams in (1, 4)}
    settings = json.loads((folder / "generation_config.json").read_text())
    settings.update(
        early_stopping=True,
        length_penalty=-3.0,
        no_repeat_ngram_size=1,
        repetition_penalty=9.0,
        forced_bos_token_id=settings["eos_token_id"] + 7,
        min_length=40,
        num_beams=3,
    )
    (folder / "generation_config.json").write_text(json.dumps(settings))
    t2u = TextToUnit.load(folder)
    assert t2u.model.generation_config.no_repeat_ngram_size == 0
    for beams, units in expected.items():
        assert t2u.units(texts, beams=beams) == units
    # The check has teeth: the same settings, left in place, change the output.
    t2u.model.generation_config.update(no_repeat_ngram_size=1, forced_bos_token_id=settings["forced_bos_token_id"])
    from transformers import GenerationConfig

    plain = t2u.model.generate(
        input_ids=torch.tensor(t2u.encode(texts[:1])),
        generation_config=GenerationConfig(num_beams=1, max_length=30, decoder_start_token_id=t2u.vocab.eos_id),
    )
    assert t2u.vocab.units_of(plain[0, 1:].tolist()) != expected[1][0][: plain.shape[1] - 1]


def test_decoding_config_stops_beam_search_by_score_not_by_count() -> None:
    from dvcli.t2u.model import decoding_config

    config = decoding_config(UnitVocab(k=12, offset=30, eos_id=2, pad_id=1), beams=5, max_length=40)
    assert (config.num_beams, config.early_stopping, config.length_penalty, config.do_sample) == (5, False, 1.0, False)
    assert (config.decoder_start_token_id, config.eos_token_id, config.pad_token_id) == (2, 2, 1)


def test_unreadable_characters() -> None:
    assert unreadable_characters("Hello, world! $5 & 10% — café") == []
    assert unreadable_characters("Привет 😀 ok") == list("Привет") + ["😀"]
    assert unreadable_characters("") == []


def _rows(texts: list[str], speakers: list[str] | None = None, splits: list[str] | None = None) -> list[Utterance]:
    speakers = speakers or ["a"] * len(texts)
    splits = splits or [""] * len(texts)
    return [
        Utterance(f"u{i}", Path(f"/x/u{i}.wav"), s, 1.0, t, split=p)
        for i, (t, s, p) in enumerate(zip(texts, speakers, splits))
    ]


def test_pairing_skips_and_counts_and_names_the_first_missing_id(caplog: pytest.LogCaptureFixture) -> None:
    rows = _rows(["one two", "", "  ?! ", "three", "four", "five 😀 мир"], splits=["", "", "", "", "heldout", ""])
    source = UnitSource(Path("units.tsv"), {"u0": [1, 1, 2], "u3": [], "u4": [5], "u5": [3]}, 10, 50.0, None)
    with caplog.at_level(logging.WARNING, logger="dvcli"):
        examples, counts = pair_examples(rows, source, manifest=Path("m.tsv"))
    assert [e.id for e in examples] == ["u0", "u5"] and examples[0].units == [1, 2]
    assert examples[1].text == "five"  # unreadable characters dropped...
    assert "cannot read from 1 row(s): '😀мир'" in caplog.text  # ...with a warning
    assert (counts.empty_text, counts.empty_units, counts.other_speakers, counts.used) == (2, 1, 1, 2)
    assert pair_examples(rows, source, manifest=Path("m.tsv"), dedup=False)[0][0].units == [1, 1, 2]
    del source.units["u0"]
    with pytest.raises(UserError, match="no units for utterance 'u0'") as err:
        pair_examples(rows, source, manifest=Path("m.tsv"))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="none of the speakers"):
        pair_examples(rows, source, manifest=Path("m.tsv"), speakers=["zed"])


def test_unit_vocabulary_size_sources_and_checks() -> None:
    rows = _rows(["a b", "c d"])
    examples, _ = pair_examples(
        rows, UnitSource(Path("u"), {"u0": [3, 7], "u1": [1]}, None, None, None), manifest=Path("m")
    )
    assert unit_vocabulary_size(examples, UnitSource(Path("u"), {}, None, None, None)) == 8
    assert unit_vocabulary_size(examples, UnitSource(Path("u"), {}, 100, None, None)) == 100
    assert unit_vocabulary_size(examples, UnitSource(Path("u"), {}, 100, None, None), k=50) == 50
    with pytest.raises(UserError, match="outside the k-means size 5"):
        unit_vocabulary_size(examples, UnitSource(Path("u"), {}, 5, None, None))


def test_split_holds_out_whole_sentences() -> None:
    rows = _rows([t for t in make_sentences(10) for _ in range(3)], speakers=["a", "b", "c"] * 10)
    units = {r.id: [1, 2] for r in rows}
    examples, _ = pair_examples(rows, UnitSource(Path("u"), units, 5, None, None), manifest=Path("m"))
    train, valid = split_by_sentence(examples, 0.2, seed=1)
    assert len({e.text for e in valid}) == 2 and len(valid) == 6
    assert not {e.text for e in train} & {e.text for e in valid}
    assert split_by_sentence(examples, 0.2, seed=1) == (train, valid)
    assert split_by_sentence(examples, 0.0)[1] == []
    assert len({e.text for e in split_by_sentence(examples, 0.01)[1]}) == 1  # at least one sentence


def test_read_unit_source_reads_k_and_fingerprints_the_centroids(tmp_path: Path) -> None:
    manifest, folder = make_t2u_data(tmp_path, make_sentences(3), k=20)
    np.save(folder / "centroids.npy", np.zeros((20, 4), np.float32))
    source = read_unit_source(folder)
    assert source.k == 20 and source.frame_rate == 50.0 and len(source.kmeans_sha256) == 64
    assert set(source.units) == {u.id for u in read_manifest(manifest)}
    # A bare units.tsv elsewhere: no k, no fingerprint.
    write_units(tmp_path / "plain.tsv", source.units)
    bare = read_unit_source(tmp_path / "plain.tsv")
    assert (bare.k, bare.kmeans_sha256) == (None, None)
    (folder / "meta.json").write_text(json.dumps({"stage": "cluster", "kmeans": {"n_clusters": 30}}))
    assert read_unit_source(folder).k == 30
