"""Stage 4, rendering: Lock -> `BuildPlan` -> Dockerfile, Apptainer definition and build context."""
