"""The DINO-VITS joint model: the published model file, its training data, the speaker student."""
