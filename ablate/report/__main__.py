import sys

from ablate.report.build import main

sys.exit(main())
