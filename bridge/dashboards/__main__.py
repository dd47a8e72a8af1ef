import sys

from bridge.dashboards import main

sys.exit(main())
