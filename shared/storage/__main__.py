"""`python -m shared.storage {upgrade,current,heads,revision} SERVICE …` (see migrate.py)."""
from shared.storage.migrate import main

main()
