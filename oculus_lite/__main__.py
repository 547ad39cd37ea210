"""``python -m oculus_lite``."""

from .cli import main

raise SystemExit(main())
