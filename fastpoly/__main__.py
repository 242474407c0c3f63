"""``python -m fastpoly`` runs the command line."""
import sys

from fastpoly.cli.main import main

sys.exit(main())
