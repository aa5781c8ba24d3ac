"""`python -m fusion_pipeline.cli`: the `fusion-pipeline` command."""

import sys

from fusion_pipeline.cli.main import main

sys.exit(main())
