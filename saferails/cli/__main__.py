"""``python -m saferails.cli ...``: the same as the ``saferails`` script."""

import sys

from saferails.cli import main

sys.exit(main())
