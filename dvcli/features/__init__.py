"""Acoustic feature extractors that run batched on the model's device."""
