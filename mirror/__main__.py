"""`python -m mirror`: the same as the `mirror` command."""

import sys

from mirror.entry import main

sys.exit(main())
