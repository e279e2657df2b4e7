"""Stage 5, the build: context -> an image the engine builds, normalised -> `BuildRecord`."""
