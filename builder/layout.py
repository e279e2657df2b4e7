"""Names every stage agrees on: where things live inside the image and in the project.

A module that imports nothing, because `reprobuild run` reads it on its way to the container's
start, where importing the plan (and the lock and apt modules behind it) would cost more than
the rest of that path.
"""

# Inside the image.
CODE = "/workspace"
OUTPUTS = "/outputs"  # where `run` and the exported cluster jobs mount a writable outputs folder
USER, UID = "reprobuild", 1000
OUTPUTS_VARIABLE = "REPROBUILD_OUTPUTS"  # names OUTPUTS to the command `run` starts
# Where `run` mounts its run folder's report/, in which the image's hook writes what it applied
# and the training trace (builder/smoke/hook.py reads the variable).
REPORT, REPORT_VARIABLE = "/run/reprobuild", "REPROBUILD_REPORT"

# The labels that name the lock an image (final or dependencies) was built from, and its project.
LOCK_LABEL = "dev.reprobuild.lock"
TITLE_LABEL = "org.opencontainers.image.title"

# In the project: what reprobuild itself writes there.
WORK_FOLDER = ".reprobuild"  # the build context and the wheelhouse
RECORD_FILE = "reprobuild.build.json"
RUNS_FOLDER = "runs"
MANIFEST_FILE = "reprobuild.manifest.json"  # `reprobuild publish`: the manifest a paper publishes
REPRODUCE_FILE = "REPRODUCE.md"  # and its human-readable twin

# Where a knowledge base other than the shipped one is named (as --knowledge does).
KNOWLEDGE_VARIABLE = "REPROBUILD_KNOWLEDGE"
