"""The package's layering: components build on bridge.schema, never on the loader that imports them all."""

from __future__ import annotations

import subprocess
import sys


def test_components_do_not_import_the_config_loader() -> None:
    """bridge.config imports every component through the registry; a component importing it back is a cycle."""
    probe = "import sys\nfrom bridge import registry\nregistry.load_builtins()\nprint('bridge.config' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stdout + result.stderr
