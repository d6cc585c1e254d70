"""``python -m nodemetrics``: the same program as the ``nodemetrics`` command."""

import sys

from ._cli import main


sys.exit(main())
