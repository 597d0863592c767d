from prover.demo import run_demo


def test_demo_end_to_end_on_a_local_chain():
    messages: list[str] = []
    report = run_demo(patient=3, echo=messages.append)
    text = report.render()
    assert text.startswith("\nzkcare demo report")
    lines = dict(report.lines)
    assert lines["verify (eth_call)"] == "accepted"
    assert lines["verify (transaction)"].startswith("accepted, gas used ")
    assert "NOT FOR PRODUCTION" in lines["SRS"]
    assert set(report.stages) == {
        "build or reuse circuit bundle",
        "start local chain (anvil)",
        "deploy verifier",
        "prove diagnosis",
        "verify by eth_call",
        "verify in a transaction",
    }
    assert any(m.startswith("» prove diagnosis") for m in messages)
