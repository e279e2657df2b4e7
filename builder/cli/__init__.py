"""The `reprobuild` command: click only. Parse, call one stage, print; one module per verb."""
