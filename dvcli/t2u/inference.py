"""Text-to-unit inference: :class:`TextToUnit` loads a trained folder and turns text into units."""

from __future__ import annotations

import logging
import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dvcli.errors import path_error
from dvcli.t2u.model import decoding_config, quiet_transformers, set_generation_defaults
from dvcli.t2u.vocab import UNIT_VOCAB_FILE, UnitVocab
from dvcli.text import normalize_text
from dvcli.units.sequences import deduplicate

log = logging.getLogger(__name__)

# -- inference ------------------------------------------------------------------------------------


def unreadable_characters(text: str) -> list[str]:
    """Characters of ``text`` the English normaliser drops as unreadable (not mere punctuation).

    Letters that do not fold to a-z (Cyrillic, CJK...) and symbols such as emoji; ASCII punctuation
    and symbols the normaliser spells or drops on purpose (``$ % & .``) are not reported.
    """
    bad = []
    for char in text:
        category = unicodedata.category(char)
        if char.isascii() or category[0] not in "LSN":
            continue
        folded = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
        if not any(c.isalnum() for c in folded):
            bad.append(char)
    return bad


class _LengthCap:
    """Beam-search logits processor: at least one unit, at most ``limit`` units per sentence.

    Rows of ``scores`` are ``batch * beams``, sentence-major, as transformers lays them out.
    """

    def __init__(self, limits: torch.Tensor, beams: int, eos_id: int, prompt_length: int = 1) -> None:
        self.limits = limits.repeat_interleave(beams)  # (B * beams,)
        self.eos_id = eos_id
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_length
        if generated == 0:
            scores[:, self.eos_id] = -math.inf
        over = self.limits.to(scores.device) <= generated
        if over.any():
            scores[over] = -math.inf
            scores[over, self.eos_id] = 0.0
        return scores


class TextToUnit:
    """A trained text-to-unit model, ready for batched beam search.

    Attributes:
        vocab: the :class:`UnitVocab` (``vocab.k``: unit vocabulary size; ``vocab.dedup``).
        model: the ``MBartForConditionalGeneration``; ``tokenizer``: its tokenizer.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, vocab: UnitVocab) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.vocab = vocab

    @property
    def k(self) -> int:
        """Unit vocabulary size: every unit returned is in ``range(k)``."""
        return self.vocab.k

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> TextToUnit:
        """Load a ``dv train-t2u`` output folder.

        Raises:
            UserError: the folder is missing, unfinished, or not a text-to-unit model.
        """
        from transformers import AutoTokenizer, MBartForConditionalGeneration

        folder = Path(folder)
        if folder.is_file():
            raise path_error(
                folder, "is a file; a text-to-unit model is a folder", "give the dv train-t2u output folder"
            )
        if not folder.is_dir():
            raise path_error(folder, "text-to-unit model folder not found", "train one with dv train-t2u")
        vocab = UnitVocab.load(folder)
        if not (folder / "config.json").is_file():
            raise path_error(folder, "no config.json: the training run did not finish", "rerun dv train-t2u --resume")
        quiet_transformers()
        try:
            model = MBartForConditionalGeneration.from_pretrained(folder)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise path_error(
                folder, f"cannot load the text-to-unit model ({first})", "retrain with dv train-t2u"
            ) from None
        if model.config.vocab_size < vocab.offset + vocab.k:
            raise path_error(
                folder,
                f"model has {model.config.vocab_size} tokens, {UNIT_VOCAB_FILE} needs {vocab.offset + vocab.k}",
                "the folder mixes files of two runs; retrain",
            )
        # generate() fills settings left unset from model.generation_config: make that ours too, not the
        # folder's generation_config.json (which --init copies from a pretrained mBART).
        set_generation_defaults(model, vocab, beams=model.generation_config.num_beams or 1)
        return cls(model.to(device).eval(), tokenizer, vocab)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Normalise and tokenise ``texts`` (one token-id list per text; empty when nothing readable is left)."""
        ids: list[list[int]] = []
        dropped: list[str] = []
        limit = self.model.config.max_position_embeddings
        for text in texts:
            dropped += unreadable_characters(text)
            normalized = normalize_text(text)
            if not normalized:
                ids.append([])
                continue
            tokens = self.tokenizer(normalized, add_special_tokens=True)["input_ids"]
            if len(tokens) > limit:
                log.warning("text-to-unit: a text of %d tokens is cut to the model's %d", len(tokens), limit)
                tokens = tokens[: limit - 1] + tokens[-1:]
            ids.append(tokens)
        if dropped:
            shown = "".join(dict.fromkeys(dropped))[:20]
            log.warning(
                "text-to-unit: dropped %d character(s) the English normaliser cannot read: %r", len(dropped), shown
            )
        unk = self.tokenizer.unk_token_id
        if unk is not None and any(unk in seq for seq in ids):
            log.warning("text-to-unit: some text maps to <unk> (characters the tokenizer never saw)")
        return ids

    @torch.inference_mode()
    def units(self, texts: Sequence[str], beams: int = 5, batch_size: int = 16) -> list[list[int]]:
        """Unit sequences for ``texts`` by batched beam search.

        Texts are normalised with :func:`dvcli.text.normalize_text`; characters it cannot read are
        dropped with a warning. A text with nothing readable gives ``[]`` (with a warning), never
        an exception. Each output holds at most ``vocab.max_units(source tokens)`` units, and is
        run-collapsed when the model was trained on deduplicated units.

        Args:
            texts: sentences, any length (long ones are cut to the model's maximum).
            beams: beam width (1 = greedy).
            batch_size: sentences decoded together (sorted by length to limit padding).

        Returns:
            One list of unit ids (each in ``range(self.k)``) per text, in the order given.
        """
        sources = self.encode(texts)
        empty = sum(1 for s in sources if not s)
        if empty:
            log.warning("text-to-unit: %d text(s) have nothing readable after normalisation; no units for them", empty)
        return self.units_from_tokens(sources, beams=beams, batch_size=batch_size)

    @torch.inference_mode()
    def units_from_tokens(
        self, sources: Sequence[Sequence[int]], beams: int = 5, batch_size: int = 16
    ) -> list[list[int]]:
        """Like :meth:`units` for already tokenised sources (``[]`` gives ``[]``)."""
        was_training = self.model.training
        self.model.eval()
        results: list[list[int]] = [[] for _ in sources]
        order = sorted((i for i, s in enumerate(sources) if s), key=lambda i: len(sources[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, seq in zip(chunk, self._generate([list(sources[i]) for i in chunk], beams)):
                results[i] = seq
        self.model.train(was_training)
        return results

    def _generate(self, sources: list[list[int]], beams: int) -> list[list[int]]:
        from transformers import LogitsProcessorList

        pad = self.vocab.pad_id
        width = max(len(s) for s in sources)
        input_ids = torch.full((len(sources), width), pad, dtype=torch.long)
        mask = torch.zeros((len(sources), width), dtype=torch.long)
        for row, seq in enumerate(sources):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        ceiling = self.model.config.max_position_embeddings - 1
        limits = torch.tensor([min(self.vocab.max_units(len(s)), ceiling) for s in sources])
        # max_length counts the decoder start token; +1 leaves room for </s> after the longest allowed.
        generation = decoding_config(self.vocab, beams, max_length=int(limits.max()) + 2)
        out = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            logits_processor=LogitsProcessorList([_LengthCap(limits, beams, self.vocab.eos_id)]),
            generation_config=generation,
        )  # (B, 1 + generated): the decoder start token, then units and </s>/padding
        sequences = [self.vocab.units_of(row[1:].tolist()) for row in out.cpu()]
        return [deduplicate(s)[0] if self.vocab.dedup else s for s in sequences]
