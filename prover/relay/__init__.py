"""The prover relay: claim jobs in, proofs and on-chain payouts out (see README.md here)."""
