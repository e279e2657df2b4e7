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
SIGNING_PASSPHRASE_VARIABLE = "REPROBUILD_SIGNING_PASSPHRASE"  # a signing key's passphrase
MANIFEST_FILE = "reprobuild.manifest.json"  # `reprobuild publish`: the manifest a paper publishes
REPRODUCE_FILE = "REPRODUCE.md"  # and its human-readable twin
CITATION_FILE = "CITATION.cff"  # publish: how to cite the image (and its archive)
ZENODO_FILE = ".zenodo.json"  # publish: a deposit's metadata, with the digests
# publish: the documents pushed beside the image and written beside the manifest
SBOM_FILE = "sbom.cdx.json"
PROVENANCE_FILE = "provenance.intoto.json"
MANIFEST_SIGNATURE_FILE = "reprobuild.manifest.dsse.json"
PROVENANCE_SIGNATURE_FILE = "provenance.dsse.json"
PUBLISHED_FILES = (
    MANIFEST_FILE,
    REPRODUCE_FILE,
    CITATION_FILE,
    ZENODO_FILE,
    SBOM_FILE,
    PROVENANCE_FILE,
    MANIFEST_SIGNATURE_FILE,
    PROVENANCE_SIGNATURE_FILE,
)

# Where a knowledge base other than the shipped one is named (as --knowledge does).
KNOWLEDGE_VARIABLE = "REPROBUILD_KNOWLEDGE"
