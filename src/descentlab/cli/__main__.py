import sys

from descentlab.cli.main import main

sys.exit(main())
