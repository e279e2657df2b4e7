"""Stage 3, the lock: Resolution -> `Lock` (Python closure, base image, system packages) -> reprobuild.lock."""
