import sys

from edgecam.cli import main

sys.exit(main())
