"""``python -m collector`` is the same as the ``btse-collector`` command."""

import sys

from collector.cli import main

sys.exit(main())
