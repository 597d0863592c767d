"""The CLI against a running relay: submit a job from a JSON file, show it, list jobs."""

from __future__ import annotations

import json

from click.testing import CliRunner

from prover.relay.__main__ import cli
from prover.relay.auth import Scope

from .support import job_body, make_records, served, token_for


def test_submit_show_and_list(make_relay, dev_chain, ledger, tmp_path):
    records = make_records(1, seed=91)
    ledger.add_records(records)
    (policy,) = dev_chain.issue_policies(1)
    relay = make_relay(process=False)
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job_body(records[0], policy, "cli-job-0001")))
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps(job_body(records[0], policy, "cli-job-0002", model="nope")))
    token_file = tmp_path / "client.token"
    token_file.write_text(token_for(relay, Scope.SUBMIT, Scope.READ) + "\n")
    ledger.add_secret("client token", token_file.read_text().strip())
    runner = CliRunner()
    auth = ["--token-file", str(token_file)]
    with served(relay) as url:
        submitted = runner.invoke(cli, ["submit", str(job_file), "--url", url, *auth])
        assert submitted.exit_code == 0, submitted.output
        accepted = json.loads(submitted.output)
        assert accepted["state"] == "queued" and accepted["created"] is True
        ledger.add_text("cli submit output", submitted.output)

        shown = runner.invoke(cli, ["show", accepted["job_id"], "--url", url, *auth])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["policy_id"] == policy
        ledger.add_text("cli show output", shown.output)

        listed = runner.invoke(cli, ["list", "--state", "queued", "--url", url, *auth])
        assert listed.exit_code == 0, listed.output
        assert listed.output.startswith(f"{accepted['job_id']}  queued     policy {policy}")

        rejected = runner.invoke(cli, ["submit", str(bad_file), "--url", url, *auth])
        assert rejected.exit_code == 1
        assert "Error: 422: unknown model name or version; this relay proves:" in rejected.output
        ledger.add_text("cli error output", rejected.output)

        missing = runner.invoke(cli, ["show", "0" * 32, "--url", url, *auth])
        assert missing.exit_code == 1 and "404: no job" in missing.output
    down = runner.invoke(cli, ["list", "--url", url, *auth])
    assert down.exit_code == 1 and "is unreachable (ConnectionError)" in down.output
