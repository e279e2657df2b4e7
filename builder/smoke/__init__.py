"""The in-image smoke test: deterministic kernels give bit-identical tensors; the check can fail.

Runs the kernel suite in two fresh processes under deterministic settings and compares sha256
fingerprints of every output; then a canary runs the nondeterminism witnesses twice each without
those settings and reports how many differed. Needs only the standard library and torch, so it
runs inside an image (`reprobuild-smoke`) or directly on a GPU host (`python -m builder.smoke`).
"""
