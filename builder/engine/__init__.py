"""Edges to the outside: the Docker engine (docker SDK and the socket), registries, package indexes, this host."""
