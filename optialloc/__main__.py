"""`python -m optialloc` is the `optialloc` command."""

import sys

from optialloc.cli import main

sys.exit(main())
