"""``python -m scrd`` (and ``torchrun … -m scrd``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
