"""``python -m tsformer`` (and ``torchrun -m tsformer``) run the command-line interface."""

from .cli import main

raise SystemExit(main())
