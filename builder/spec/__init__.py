"""Stage 1, the spec: `reprobuild.toml` (or `[tool.reprobuild]`) found, read and validated into a `Spec`."""
