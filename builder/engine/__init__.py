"""Edges: the Docker engine (SDK and socket), registries, package indexes, this host."""
