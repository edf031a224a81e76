"""One module per pipeline stage, each a typed ``run(config) -> result``; no CLI code here."""
