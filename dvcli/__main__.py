"""``python -m dvcli`` is the same as ``dv``."""

from dvcli.cli import main

if __name__ == "__main__":
    main()
