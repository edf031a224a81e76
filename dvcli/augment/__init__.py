"""Noise and reverberation augmentation of waveform batches, on the device, reproducibly.

Shared by speaker pretraining (``dv pretrain-speaker``), joint training (the DINO views) and the
noisy evaluation trials. Each sample of a ``(B, T)`` batch is, independently:

1. reverberated with probability ``reverb_prob``: convolved with a room impulse response from a
   folder (RIRS_NOISES layout) or a generated one (exponentially decaying Gaussian noise after a
   direct-path impulse, RT60 drawn per sample), aligned on the direct path and rescaled to the
   input's power; then
2. mixed with noise with probability ``noise_prob`` at an SNR drawn uniformly from
   ``[snr_min, snr_max]`` dB: noise files from a folder (MUSAN layout) or, without one, a generated
   kind (white, pink, brown, babble of corpus utterances, mains hum, traffic-like rumble).

Every random draw comes from the ``torch.Generator`` passed in (from
:func:`dvcli.training.checkpoints.step_generator` during training), so a resumed run augments exactly as the
uninterrupted one would have, whatever the device.
"""
