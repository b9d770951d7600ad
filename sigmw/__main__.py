import sys

from sigmw.cli import main

sys.exit(main())
