"""`python -m tierflow`: the `tierflow` command."""

import sys

from tierflow.cli import main

sys.exit(main())
