"""`python -m bench [--quick] [--postgres URL] [--only NAME] [--json PATH]`."""

import sys

from .runner import main

if __name__ == "__main__":
    sys.exit(main())
