"""The local prover pool: bundles pinned in sealed memory once per worker, and prefetch."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
from pathlib import Path

import pytest

from prover.exceptions import CircuitError
from prover.models.build import LoadedModel, prove_record
from prover.relay.worker import PINNED_FILES, LocalProverPool, ModelRef, ProveTask, pin_bundle
from prover.zk import proof as proofs
from prover.zk.circuit import Bundle, load_bundle
from prover.zk.commitment import KZG_SALT_LIMBS, new_salt

from .support import MODEL, make_records


@pytest.fixture
def bundle_copy(diagnostic_bundle: Bundle, tmp_path: Path) -> Bundle:
    """A private copy of the real bundle that a test may damage."""
    return load_bundle(Path(shutil.copytree(diagnostic_bundle.path, tmp_path / "bundle")))


def test_pinned_bundle_proves_with_the_bytes_read_at_start(
    bundle_copy: Bundle, diagnostic_bundle: Bundle, tmp_path: Path, ledger
) -> None:
    pinned = pin_bundle(bundle_copy)
    for name in PINNED_FILES:
        path = pinned.file(name)
        assert path.parent == Path("/proc/self/fd")
        assert os.readlink(path).startswith(f"/memfd:zkcare-{name}")
        assert path.read_bytes() == (bundle_copy.path / name).read_bytes()
        # sealed: nobody (this process included) can change what the worker proves with
        fd = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(PermissionError) as info:
                os.write(fd, b"\0")
            assert info.value.errno == errno.EPERM
            with pytest.raises(PermissionError):
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)
    # The bundle on disk is replaced by garbage after pinning: proofs are unaffected.
    for name in PINNED_FILES:
        target = bundle_copy.path / name
        target.write_bytes(b"\0" * target.stat().st_size)
    [record] = make_records(1, seed=401)
    ledger.add_records([record])
    model = dataclasses.replace(LoadedModel.open(bundle_copy), bundle=pinned)  # as init_worker
    result = prove_record(model, record.features, tmp_path / "work", salt=new_salt(KZG_SALT_LIMBS))
    assert proofs.verify(diagnostic_bundle, result.proof)
    assert (result.outputs[0] <= 0) == record.pays


def test_pinning_refuses_a_proving_key_that_does_not_match_the_manifest(
    bundle_copy: Bundle,
) -> None:
    pk = bundle_copy.path / "pk.key"
    pk.write_bytes(pk.read_bytes()[:-1])
    with pytest.raises(CircuitError, match=r"pk.key has \d+ bytes, the manifest says \d+"):
        pin_bundle(bundle_copy)


def test_pool_capacity_counts_one_queued_task_behind_each_running_one(tmp_path: Path) -> None:
    ref = ModelRef("m", str(tmp_path))
    default = LocalProverPool({"m": ref}, workers=3, work_root=tmp_path / "a")
    none = LocalProverPool({"m": ref}, workers=3, work_root=tmp_path / "b", prefetch=0)
    try:
        assert (default.parallelism, default.capacity) == (3, 6)
        assert (none.parallelism, none.capacity) == (3, 3)
    finally:
        default.close()
        none.close()


def test_a_full_pool_runs_one_proof_per_process_at_a_time(
    prover_pool: LocalProverPool, relay_models, ledger
) -> None:
    model = relay_models[(MODEL, 1)]
    records = make_records(prover_pool.capacity, seed=402)
    ledger.add_records(records)
    futures = [
        prover_pool.submit(ProveTask(f"w{i}", model.ref.key, tuple(r.features), tuple(new_salt(KZG_SALT_LIMBS))))
        for i, r in enumerate(records)
    ]
    results = [f.result(timeout=120) for f in futures]
    assert [r.job_id for r in results] == [f"w{i}" for i in range(len(records))]
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        by_worker.setdefault(r.worker, []).append((r.started_at, r.started_at + r.seconds))
    assert len(by_worker) <= prover_pool.parallelism
    for spans in by_worker.values():  # prefetched tasks wait; they never run alongside
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
