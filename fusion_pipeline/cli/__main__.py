"""`python -m fusion_pipeline.cli`: the `fusion-pipeline` command."""

import sys

from fusion_pipeline.cli.commands import main

sys.exit(main())
