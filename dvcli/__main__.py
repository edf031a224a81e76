"""``python -m dvcli`` is the same as ``dv``."""

from dvcli.entry import main

if __name__ == "__main__":
    main()
