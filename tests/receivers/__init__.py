"""Real receivers on 127.0.0.1 that tests (and the fault suite) send to: they decode, record and answer as scripted."""
