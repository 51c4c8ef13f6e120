"""Evaluation suites for pruned models; each is its own module (nothing is imported here, so one suite's
dependencies never load with another's):

- `sdtp_lib.eval.synthetic`: a seeded long-context retrieval suite with exact scoring (passkey, multi-key
  needle-in-a-haystack, key-value retrieval, variable tracking), resumable and data parallel.
"""
