"""`python -m pipelines.cli ...`: the same `tradecast` command."""

import sys

from pipelines.cli import main

sys.exit(main())
