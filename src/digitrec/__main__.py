"""`python -m digitrec` (and so `torchrun -m digitrec train ...`)."""
from digitrec.cli import main

raise SystemExit(main())
