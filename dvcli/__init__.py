"""dv: zero-shot voice cloning robust to noisy references (DINO-VITS)."""

__version__ = "0.1.0"
