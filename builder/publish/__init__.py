"""Hand the image on: the manifest a paper publishes, its verification, cluster jobs that run it."""
