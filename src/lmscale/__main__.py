import sys

from lmscale.cli import main

sys.exit(main())
