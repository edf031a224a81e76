"""Text-to-unit: an mBART encoder-decoder that turns text into the content units VITS reads.

At inference DINO-VITS replaces HuBERT by this model: text in, the same discrete units out. A
trained model is a Hugging Face ``save_pretrained`` folder that plain transformers loads::

    MBartForConditionalGeneration.from_pretrained(folder)   # config.json + model.safetensors
    AutoTokenizer.from_pretrained(folder)                   # tokenizer.json + tokenizer_config.json

plus ``unit_vocab.json`` (:class:`UnitVocab`): how unit ids map to token ids, and which k-means
model they come from. One vocabulary is shared by encoder and decoder (mBART ties them):

    [ text tokens (specials <s> <pad> </s> <unk>, then pieces) | <u0> <u1> ... <u{k-1}> ]
                                                                ^ UnitVocab.offset

The decoder may only emit unit tokens and ``</s>``: every other entry of the output layer's bias
(``final_logits_bias``) is set to -1e4, so even a plain ``model.generate`` yields units only.

Use :class:`TextToUnit` for inference::

    t2u = TextToUnit.load("runs/t2u")
    t2u.units(["Hello there.", "A second sentence."])   # -> [[12, 873, ...], [...]]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dvcli.atomic import write_json
from dvcli.errors import UserError, path_error
from dvcli.text import normalize_text
from dvcli.units import deduplicate

log = logging.getLogger(__name__)

UNIT_VOCAB_FILE = "unit_vocab.json"
#: Logit bias that keeps text tokens out of the decoder's output (finite, so fp16 stays finite).
MASKED_BIAS = -1e4


def unit_token(unit: int) -> str:
    """The token string of unit ``unit`` (``<u17>``)."""
    return f"<u{unit}>"


# -- the unit vocabulary --------------------------------------------------------------------------


@dataclasses.dataclass
class UnitVocab:
    """Where the units sit in the token vocabulary, and what they are (saved as ``unit_vocab.json``).

    ``synthesize`` compares ``k`` (and ``kmeans_sha256`` when both sides know it) with the joint
    model's, so a text-to-unit model never feeds units from another k-means model to VITS.
    """

    k: int  # number of units (k-means clusters); unit ids are 0..k-1
    offset: int  # token id of unit 0; unit u is token offset + u
    eos_id: int  # </s>: ends a unit sequence (and starts the decoder, as in BART)
    pad_id: int  # padding token
    dedup: bool = True  # trained on run-collapsed units, and output collapsed too
    frame_rate: float | None = None  # unit frames per second before deduplication (from the k-means meta)
    kmeans_sha256: str | None = None  # fingerprint of the k-means centroids the units came from
    units_per_token: float = 8.0  # generation cap: units per source token (from the training data)
    extra_units: int = 16  # generation cap: units allowed on top of units_per_token * tokens

    @property
    def target_ids(self) -> list[int]:
        """Token ids the decoder may emit: ``</s>`` first, then the units in order (label i <-> here i)."""
        return [self.eos_id] + list(range(self.offset, self.offset + self.k))

    def tokens_of(self, units: Sequence[int]) -> list[int]:
        """Unit ids -> token ids."""
        return [self.offset + u for u in units]

    def units_of(self, token_ids: Sequence[int]) -> list[int]:
        """Token ids -> unit ids, stopping at ``</s>`` and skipping anything that is not a unit."""
        units = []
        for t in token_ids:
            if t == self.eos_id:
                break
            if self.offset <= t < self.offset + self.k:
                units.append(t - self.offset)
        return units

    def max_units(self, source_tokens: int) -> int:
        """How many units beam search may generate for a source of ``source_tokens`` tokens."""
        return int(math.ceil(self.units_per_token * source_tokens)) + self.extra_units

    def check_compatible(self, k: int, kmeans_sha256: str | None = None, *, where: str = "the joint model") -> None:
        """Refuse to feed these units to a model trained on other units (``dv synthesize`` calls this).

        Raises:
            UserError: different unit counts, or different k-means models when both fingerprints are known.
        """
        if k != self.k:
            raise UserError(
                f"{where} reads {k} units but the text-to-unit model writes {self.k}: "
                "train both on the same dv cluster output"
            )
        if kmeans_sha256 and self.kmeans_sha256 and kmeans_sha256 != self.kmeans_sha256:
            raise UserError(
                f"{where} and the text-to-unit model were trained on units of different k-means "
                "models (centroids differ): train both on the same dv cluster output"
            )

    def save(self, folder: Path) -> None:
        write_json(Path(folder) / UNIT_VOCAB_FILE, dataclasses.asdict(self))

    @classmethod
    def load(cls, folder: Path) -> UnitVocab:
        """Read ``folder/unit_vocab.json``.

        Raises:
            UserError: the file is missing or malformed.
        """
        path = Path(folder) / UNIT_VOCAB_FILE
        if not path.is_file():
            raise path_error(
                folder, f"no {UNIT_VOCAB_FILE}: not a dv text-to-unit folder", "train one with dv train-t2u"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{key: value for key, value in data.items() if key in names})
        except (json.JSONDecodeError, TypeError) as err:
            raise path_error(path, f"unreadable unit vocabulary ({err})", "retrain with dv train-t2u") from None


# -- model ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class T2UArch:
    """An mBART shape (the fields map one-to-one onto ``MBartConfig``)."""

    d_model: int  # hidden size
    encoder_layers: int
    decoder_layers: int
    attention_heads: int  # per layer, encoder and decoder
    ffn_dim: int  # feed-forward inner size
    max_positions: int  # longest source or unit sequence the model can read


#: ``tiny`` trains on CPU in minutes (tests, demo); ``base`` is a Transformer-base-sized model for
#: real corpora; ``--init`` brings the pretrained model's own shape (mbart-large-cc25: 610M).
PRESETS: dict[str, T2UArch] = {
    "tiny": T2UArch(d_model=128, encoder_layers=2, decoder_layers=2, attention_heads=4, ffn_dim=512, max_positions=512),
    "base": T2UArch(
        d_model=512, encoder_layers=6, decoder_layers=6, attention_heads=8, ffn_dim=2048, max_positions=1024
    ),
}


def mbart_config(arch: T2UArch, vocab_size: int, *, dropout: float, pad_id: int, eos_id: int, bos_id: int) -> Any:
    """The ``MBartConfig`` of a from-scratch model with ``vocab_size`` tokens (text + units)."""
    from transformers import MBartConfig

    return MBartConfig(
        vocab_size=vocab_size,
        d_model=arch.d_model,
        encoder_layers=arch.encoder_layers,
        decoder_layers=arch.decoder_layers,
        encoder_attention_heads=arch.attention_heads,
        decoder_attention_heads=arch.attention_heads,
        encoder_ffn_dim=arch.ffn_dim,
        decoder_ffn_dim=arch.ffn_dim,
        max_position_embeddings=arch.max_positions,
        dropout=dropout,
        attention_dropout=dropout,
        activation_dropout=0.0,
        scale_embedding=True,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        decoder_start_token_id=eos_id,
        forced_eos_token_id=None,
        tie_word_embeddings=True,
    )


def restrict_output(model: torch.nn.Module, vocab: UnitVocab) -> None:
    """Let the decoder emit only units and ``</s>``: mask every other token in ``final_logits_bias``."""
    bias = model.final_logits_bias  # (1, V)
    keep = torch.zeros(bias.shape[-1], dtype=torch.bool, device=bias.device)
    keep[torch.tensor(vocab.target_ids, device=bias.device)] = True
    with torch.no_grad():
        bias[:, ~keep] = MASKED_BIAS


def decoding_config(vocab: UnitVocab, beams: int, max_length: int) -> Any:
    """Every setting of unit decoding, spelled out: a ``transformers.GenerationConfig``.

    ``generate`` fills each setting left unset from the model folder's ``generation_config.json``
    (a pretrained mBART given to ``--init`` carries its own) and then from transformers' global
    defaults, which change between releases; nothing here is left to either.

    The search is fairseq's and transformers' length-normalised beam search (score = sum of log
    probabilities / length, ``length_penalty`` 1) that stops once no running beam can beat the
    finished ones (``early_stopping=False``). Not ``early_stopping=True``: that stops as soon as
    ``beams`` hypotheses have ended, however poor, before the best running beam reaches ``</s>``.
    On a toy model it cut a 51-unit answer to 30 (unit error 10.6% with 2 beams, 0% greedy).

    Args:
        vocab: the model's :class:`UnitVocab` (start, end and padding tokens).
        beams: beam width (1 = greedy search).
        max_length: decoder length limit, counting the decoder start token.
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        decoder_start_token_id=vocab.eos_id,  # mBART starts decoding from </s>
        eos_token_id=vocab.eos_id,
        pad_token_id=vocab.pad_id,
        num_beams=beams,
        do_sample=False,
        early_stopping=False,
        length_penalty=1.0,
        num_return_sequences=1,
        max_length=max_length,
        min_length=0,  # at least one unit: _LengthCap
        no_repeat_ngram_size=0,
        encoder_no_repeat_ngram_size=0,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        bad_words_ids=None,
        suppress_tokens=None,
        begin_suppress_tokens=None,
        exponential_decay_length_penalty=None,
        remove_invalid_values=False,
        renormalize_logits=False,
        use_cache=True,
        output_scores=False,
        return_dict_in_generate=False,
    )


def set_generation_defaults(model: torch.nn.Module, vocab: UnitVocab, beams: int = 5) -> None:
    """Make plain ``model.generate`` (and the saved ``generation_config.json``) decode units.

    The model's own config loses the generation settings a pretrained mBART brings
    (``forced_bos_token_id``, ...); see :func:`decoding_config` for the rest.
    """
    model.config.decoder_start_token_id = vocab.eos_id
    model.config.forced_bos_token_id = None
    model.config.forced_eos_token_id = None
    model.generation_config = decoding_config(vocab, beams, model.config.max_position_embeddings)


def quiet_transformers() -> None:
    """No transformers progress bars or advisory warnings: dv reports progress itself."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


class UnitLoss(torch.nn.Module):
    """Label-smoothed cross-entropy of the next unit, over the target vocabulary only.

    Scores only the ``k + 1`` rows of the output layer that a unit sequence can use (``</s>`` and
    the units), which is what inference allows too; with a pretrained 250k-token mBART this also
    skips most of the output projection. Wrap *this* module in DDP: it runs the model's forward.
    """

    def __init__(self, model: torch.nn.Module, vocab: UnitVocab, label_smoothing: float = 0.1) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing
        self.register_buffer("target_ids", torch.tensor(vocab.target_ids), persistent=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        decoder_attention_mask: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(loss, correct)``: mean loss over non-padding labels, and how many argmaxes were right.

        Shapes: ``input_ids``/``attention_mask`` (B, S); the decoder tensors and ``labels`` (B, T),
        ``labels`` indexing :attr:`UnitVocab.target_ids` (-100 = padding).
        """
        hidden = self.model.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
        ).last_hidden_state  # (B, T, C)
        weight = self.model.lm_head.weight[self.target_ids]  # (K + 1, C), tied to the embeddings
        logits = torch.nn.functional.linear(hidden, weight).float()  # (B, T, K + 1)
        logits = logits + self.model.final_logits_bias[:, self.target_ids].float()
        flat_labels = labels.reshape(-1)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), flat_labels, ignore_index=-100, label_smoothing=self.label_smoothing
        )
        correct = ((logits.argmax(-1).reshape(-1) == flat_labels) & (flat_labels >= 0)).sum()
        return loss, correct


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
