"""``python -m demo``: run the main scenario (see ``demo.run``)."""

import sys

from demo.run import main

sys.exit(main())
