"""Evaluation of synthesized speech and speaker encoders (``dv evaluate``).

- :mod:`~dvcli.evaluation.clips`: the rows to score (``synth.tsv``, or a manifest as ground truth);
- :mod:`~dvcli.evaluation.asr`: offline speech recognisers (pocketsphinx, Whisper) and CER/WER;
- :mod:`~dvcli.evaluation.verifiers`: speaker verifiers for SECS and EER (resemblyzer, CAM++);
- :mod:`~dvcli.evaluation.dnsmos`: DNSMOS quality estimates;
- :mod:`~dvcli.evaluation.noise`: additive noise at a given SNR (noisy trials);
- :mod:`~dvcli.evaluation.report`: grouping, means with 95% intervals, report.md/json, plots;
- :mod:`~dvcli.evaluation.mos` and :mod:`~dvcli.evaluation.mos_page`: the listening-test kit.

The heavy optional packages (pocketsphinx, resemblyzer, speechmos, librosa) are imported where
they are used, so ``import dvcli`` stays fast and works without the ``eval`` extra.
"""
