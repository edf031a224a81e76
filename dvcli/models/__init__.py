"""Neural network modules. A model never reads files or parses arguments."""
