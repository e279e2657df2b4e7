"""Stage 1, the spec: `reprobuild.toml` or `[tool.reprobuild]`, read and validated."""
