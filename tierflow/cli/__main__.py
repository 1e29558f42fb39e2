"""`python -m tierflow.cli`: the `tierflow` command."""

import sys

from tierflow.cli import main

sys.exit(main())
