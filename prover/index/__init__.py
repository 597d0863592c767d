"""The event index: every event of the registry, settlement and bounty contracts in a local
store (SQLite, or PostgreSQL), resumable and safe across re-organisations; the audit that
reconciles it with the chain; CSV/JSON export.

Layers: :mod:`.contracts` (ABIs, the watched addresses) → :mod:`.store` → :mod:`.indexer` →
:mod:`.ledger` (state folded from the events) → :mod:`.audit`, :mod:`.export`.
"""
