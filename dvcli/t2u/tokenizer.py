"""Source-side tokenizers of the text-to-unit model, with the unit tokens appended.

Two ways to get one:

- :func:`train_text_tokenizer`: a SentencePiece unigram model trained on the (normalised) training
  text, converted to a Hugging Face fast tokenizer so ``AutoTokenizer.from_pretrained`` loads it.
  Token ids follow fairseq/mBART: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, then pieces. A
  source is ``pieces </s>``.
- :func:`load_pretrained_tokenizer`: the tokenizer of a pretrained mBART folder (``--init``), used
  as it is (mbart-large-cc25 writes sources as ``pieces </s> en_XX``).

:func:`add_unit_tokens` then appends ``<u0> ... <u{k-1}>`` after the text vocabulary.
"""

from __future__ import annotations

import io
import logging
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dvcli.errors import UserError, path_error
from dvcli.t2u.model import quiet_transformers
from dvcli.t2u.vocab import unit_token

log = logging.getLogger(__name__)

SPECIALS = {"bos": ("<s>", 0), "pad": ("<pad>", 1), "eos": ("</s>", 2), "unk": ("<unk>", 3)}
#: Every character :func:`dvcli.text.normalize_text` can leave in a text: the tokenizer must cover
#: them all, so no normalised sentence ever maps to <unk>.
NORMALIZED_ALPHABET = string.ascii_lowercase + "'"


def train_text_tokenizer(texts: Sequence[str], vocab_size: int, *, seed: int = 0) -> tuple[Any, bytes]:
    """Train a SentencePiece unigram model on normalised ``texts``; return it as a HF tokenizer.

    ``vocab_size`` is an upper bound: a small corpus gets fewer pieces rather than an error.

    Returns:
        ``(tokenizer, sentencepiece_model_bytes)``: a ``PreTrainedTokenizerFast`` whose
        segmentation equals SentencePiece's, and the trained ``.model`` file's content.

    Raises:
        UserError: no text to train on.
    """
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UserError("no text to train the text tokenizer on (every manifest row has empty text)")
    # The alphabet every normalised text may use, and the specials, must fit in the vocabulary.
    vocab_size = max(vocab_size, len(SPECIALS) + len(NORMALIZED_ALPHABET) + 2)
    spm.set_random_generator_seed(seed)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buffer,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=1.0,
        required_chars=NORMALIZED_ALPHABET,
        normalization_rule_name="identity",  # the text is normalised already, by normalize_text
        bos_id=SPECIALS["bos"][1],
        pad_id=SPECIALS["pad"][1],
        eos_id=SPECIALS["eos"][1],
        unk_id=SPECIALS["unk"][1],
        num_threads=1,  # deterministic piece scores
        minloglevel=2,
    )
    model_bytes = buffer.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    backend = Tokenizer(Unigram(pieces, unk_id=SPECIALS["unk"][1], byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    eos, eos_id = SPECIALS["eos"]
    backend.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, eos_id)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=SPECIALS["bos"][0],
        eos_token=eos,
        pad_token=SPECIALS["pad"][0],
        unk_token=SPECIALS["unk"][0],
        model_max_length=1_000_000,
    )
    log.info("trained a SentencePiece tokenizer: %d pieces on %d sentences", len(pieces), len(texts))
    return tokenizer, model_bytes


def load_pretrained_tokenizer(folder: Path) -> Any:
    """The tokenizer of a pretrained mBART folder (``--init``).

    Raises:
        UserError: the folder has no loadable tokenizer.
    """
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise path_error(
            folder,
            f"no usable tokenizer ({first})",
            "--init needs a Hugging Face mBART folder with its tokenizer files",
        ) from None


def add_unit_tokens(tokenizer: Any, k: int) -> int:
    """Append ``<u0> ... <u{k-1}>`` to ``tokenizer``; return the token id of ``<u0>``.

    Raises:
        UserError: the tokenizer already holds unit tokens (a t2u folder given as ``--init``).
    """
    if tokenizer.convert_tokens_to_ids(unit_token(0)) not in (None, tokenizer.unk_token_id):
        raise UserError(
            "--init: the tokenizer already has unit tokens (is it a dv train-t2u output? "
            "continue that run with --resume instead)"
        )
    offset = len(tokenizer)
    added = tokenizer.add_tokens([unit_token(u) for u in range(k)])
    first = tokenizer.convert_tokens_to_ids(unit_token(0))
    if added != k or first != offset or tokenizer.convert_tokens_to_ids(unit_token(k - 1)) != offset + k - 1:
        raise UserError(f"could not append {k} unit tokens contiguously to the tokenizer (got {added})")
    return offset
