"""Neural networks of the toolkit. Models never read files or parse arguments."""
