"""`python -m vsmsvsr ...`: see :mod:`vsmsvsr.cli`."""
from vsmsvsr.cli import main

raise SystemExit(main())
