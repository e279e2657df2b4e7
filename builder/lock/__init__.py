"""Stage 3, the lock: Resolution -> `Lock` (Python closure, base, system packages)."""
