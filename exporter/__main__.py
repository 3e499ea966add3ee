"""`python -m exporter` is `medic`."""

import sys

from exporter.cli import main

sys.exit(main())
