"""``python -m samrs_hf.cli``: the ``samrs`` command without the console script."""

import sys

from . import main

sys.exit(main())
