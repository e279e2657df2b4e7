"""`reprobuild run`: a command in the built image, and its record.

The rule of this package: its modules import, at module level, only the standard library's light
modules and the other standard-library-only modules of this package (`errors`, `layout`,
`snapshots`, `engine.common`, `engine.wire`, `build.recordfile`): no dataclasses, pathlib, typing,
click, docker or requests. A short run is held to 1.1 times a plain `docker run`, and each of
those imports is a measurable share of it. What the record needs beyond them (its dataclasses,
git, NVML) is imported on a thread while the engine starts the container. A unit test holds both
the import graph and a fresh interpreter's imports to this rule.
"""
