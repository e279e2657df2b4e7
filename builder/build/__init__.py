"""Stage 5, the build: context -> image built by the engine, normalised, recorded in a `BuildRecord`."""
