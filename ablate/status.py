"""``python -m ablate.status DIR``: every run of a sweep, how far it is, and when the sweep will end
(ablate/sweep/status.py)."""
import sys

from ablate.sweep.status import main

if __name__ == "__main__":
    sys.exit(main())
