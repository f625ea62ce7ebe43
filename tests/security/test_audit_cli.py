"""`clinic keys create|revoke` are recorded (after and before values, never the key's digest) and
`clinic audit` lists them."""

from __future__ import annotations

import uuid

from tests.conftest import clinic_on


def test_key_changes_are_audited_and_clinic_audit_lists_them(database_url: str) -> None:
    name = f"audited-{uuid.uuid4().hex[:6]}"
    created = clinic_on(database_url, "keys", "create", "--role", "clinician", "--name", name)
    assert created.returncode == 0, created.stderr
    assert clinic_on(database_url, "keys", "revoke", "--name", name).returncode == 0
    listed = clinic_on(database_url, "audit", "--limit", "50")
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.startswith("at\tservice\tactor_name")
    mine = [line for line in lines if name in line]
    assert [line.split("\t")[5] for line in mine] == ["revokeApiKey", "createApiKey"]
    revoke, create = mine
    assert '"action":"update"' in revoke and '"revoked_at":null' in revoke  # before: not revoked
    assert '"action":"insert"' in create and '"role":"clinician"' in create
    assert "key_hash" not in listed.stdout and created.stdout.strip() not in listed.stdout
    assert all(line.split("\t")[2].startswith("cli:") for line in mine)
