"""``python -m oculus_lite``."""

from ._cli import main

raise SystemExit(main())
