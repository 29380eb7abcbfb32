"""The project's vocabulary, shared by every room (plain Python, no third-party import)."""
