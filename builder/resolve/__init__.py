"""Stage 2, resolution: Spec x Target x Knowledge -> the torch build to install, and why."""
