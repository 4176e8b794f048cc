"""`python -m l1fix` is the `l1fix` command."""

from l1fix.cli import main

main()
