"""Text-to-unit: an mBART encoder-decoder that turns text into the content units VITS reads.

At inference DINO-VITS replaces HuBERT by this model: text in, the same discrete units out. A
trained model is a Hugging Face ``save_pretrained`` folder that plain transformers loads::

    MBartForConditionalGeneration.from_pretrained(folder)   # config.json + model.safetensors
    AutoTokenizer.from_pretrained(folder)                   # tokenizer.json + tokenizer_config.json

plus ``unit_vocab.json`` (:class:`dvcli.t2u.vocab.UnitVocab`): how unit ids map to token ids, and which k-means
model they come from. One vocabulary is shared by encoder and decoder (mBART ties them):

    [ text tokens (specials <s> <pad> </s> <unk>, then pieces) | <u0> <u1> ... <u{k-1}> ]
                                                                ^ UnitVocab.offset

The decoder may only emit unit tokens and ``</s>``: every other entry of the output layer's bias
(``final_logits_bias``) is set to -1e4, so even a plain ``model.generate`` yields units only.

Use :class:`dvcli.t2u.inference.TextToUnit` for inference::

    t2u = TextToUnit.load("runs/t2u")
    t2u.units(["Hello there.", "A second sentence."])   # -> [[12, 873, ...], [...]]
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from dvcli.t2u.vocab import UnitVocab

log = logging.getLogger(__name__)

#: Logit bias that keeps text tokens out of the decoder's output (finite, so fp16 stays finite).
MASKED_BIAS = -1e4


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
