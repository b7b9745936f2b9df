"""`python -m ssdconv` is the `ssdconv` command."""

import sys

from .cli import main

sys.exit(main())
