"""The mBART text-to-unit model: the model and its unit vocabulary, its training pairs, its tokenizer."""
