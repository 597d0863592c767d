"""The model-agnostic zk core: EZKL wrapper, circuit spec and bundle, salted commitment, proofs,
verifier generation, SRS and field helpers. It knows no particular model and no chain."""
