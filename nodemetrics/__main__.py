"""``python -m nodemetrics show SNAPSHOT.json``."""

import sys

from ._cli import main


sys.exit(main())
