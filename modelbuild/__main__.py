"""`python -m modelbuild` runs the command line."""

from modelbuild.commands.main import main

raise SystemExit(main())
