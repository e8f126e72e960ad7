"""`python -m whisperfast FILE...`: the same as the `whisperfast` command."""

from .cli import main

raise SystemExit(main())
