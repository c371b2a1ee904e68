"""python -m rag -> cli.main()."""

import sys

import rag  # noqa: F401  (sets the thread and offline environment first)
from rag.cli import main

sys.exit(main())
