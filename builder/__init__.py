"""reprobuild: reproducible ML training images, resolved, locked, built and proven."""

# Read by the build backend (pyproject [tool.hatch.version]); a static string keeps start-up
# free of importlib.metadata.
__version__ = "0.1.0"
