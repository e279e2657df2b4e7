"""`reprobuild run`: a command in the built image, and its record.

The rule of the way to the container's start: `run.args` and `run.run`, with what they import
(`errors`, `layout`, `snapshots`, `engine.common`, `engine.wire`, `build.recordfile`, and the
entry point with `cli.run_report`), import at module level only the standard library, and none of
dataclasses, pathlib, typing, click, docker, requests, rich or pynvml. A short run is held to 1.1
times a plain `docker run`, and each of those imports is a measurable share of it. What the record
needs beyond them (`run.runrecord`: its dataclasses, git, NVML) is imported on a thread while the
engine starts the container. tests/unit/test_layering.py holds the import graph to this rule and
tests/unit/run/test_launch.py a fresh interpreter's imports.
"""
