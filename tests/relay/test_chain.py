"""The relay's RPC client: proxy settings resolved once, calldata encoded without web3's
contract layer."""

from __future__ import annotations

import pytest
from web3 import Web3

from prover.anvil import free_port
from prover.exceptions import ChainUnavailable
from prover.relay.abi import CLAIM_SETTLEMENT_ABI
from prover.relay.chain import RpcPool, SettlementClient


def test_rpc_pool_still_honours_the_proxy_environment(node, monkeypatch) -> None:
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    with pytest.raises(ChainUnavailable):
        RpcPool([node.url], timeout=2).chain_id()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert RpcPool([node.url], timeout=2).chain_id() == 31337


def test_claim_calldata_matches_web3s_abi_encoding() -> None:
    address = "0x" + "ab" * 20
    client = SettlementClient(RpcPool(["http://127.0.0.1:1"]), address)
    claim = (
        7,
        "0x" + "12" * 20,
        1_899_990_000,
        1_900_000_000,
        bytes(range(32)),
        2**253 + 5,
        b"\x01" * 65,
        bytes(range(256)) * 9,
        [1, 2**255, 3],
    )
    reference = Web3().eth.contract(
        address=Web3.to_checksum_address(address), abi=CLAIM_SETTLEMENT_ABI
    )
    expected = bytes.fromhex(reference.encode_abi("submitClaim", [claim])[2:])
    assert client.encode_submit(claim) == expected


def test_product_record_decodes_the_payout_rule(node, dev_chain) -> None:
    """``getProduct`` returns the rule as a nested tuple; ProductInfo flattens it."""
    from prover.relay.chain import ProductInfo
    from prover.relay.devchain import AT_LEAST

    client = SettlementClient(RpcPool([node.url]), dev_chain.settlement.address)
    product_id = dev_chain.create_product(dev_chain.model_version, AT_LEAST, -5, 10**15)
    assert client.product(product_id) == ProductInfo(
        model_id=dev_chain.model_id,
        pool_id=dev_chain.pool_id,
        version=dev_chain.model_version,
        retired=False,
        payout=10**15,
        comparison=AT_LEAST,
        output=0,
        threshold=-5,
    )
    assert client.product(dev_chain.product_id).comparison == 1  # the dev chain's AtMost product
