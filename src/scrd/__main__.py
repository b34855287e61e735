"""``python -m scrd``: the command line (what torchrun launches with ``-m scrd train ...``)."""

from .cli import main

raise SystemExit(main())
