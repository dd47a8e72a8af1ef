"""The fault suite: fault fronts (proxy.py) between the bridge and real receivers (backends.py), the scenarios
of issue 5 (scenarios.py), and the command that writes docs/reliability.md from them (report.py)."""
