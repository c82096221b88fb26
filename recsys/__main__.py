"""``python -m recsys``: the ``recsys`` command, where the script is not on the ``PATH``."""

import sys

from recsys.cli import main

sys.exit(main())
