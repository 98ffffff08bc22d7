"""`python -m PETriageLib.cli` (and `torchrun -m PETriageLib.cli train ...`): the `petriage` command."""
import sys

from PETriageLib.cli import main

sys.exit(main())
