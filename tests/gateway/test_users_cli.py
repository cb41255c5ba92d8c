"""`kachery-resource gateway users add|list|remove|reset-key` through the CLI: keys shown once
(last line of stdout), stored only as hashes, and what each command refuses."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import run_cli


def add(storage: Path, name: str, *flags: str) -> str:
    done = run_cli("users", "add", name, "--storage", str(storage), *flags)
    assert done.exit_code == 0, done.output
    return done.stdout.strip().splitlines()[-1]


def test_add_list_reset_remove(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    key = add(storage, "alice", "--upload", "--admin")
    assert len(key) == 40 and key.isalnum()
    records = list((storage / "users").iterdir())
    assert len(records) == 1 and key not in records[0].read_text()  # only its hash is kept
    assert add(storage, "bob", "--no-download") != key
    listed = run_cli("users", "list", "--storage", str(storage), "--json")
    assert listed.exit_code == 0
    users = json.loads(listed.stdout)
    assert [(u["name"], u["upload"], u["download"], u["admin"]) for u in users] == [
        ("alice", True, True, True), ("bob", False, False, False)]
    assert all("keySha256" not in u for u in users)
    plain = run_cli("users", "list", "--storage", str(storage))
    assert "alice" in plain.stdout and "upload download admin" in plain.stdout
    assert f"local directory {storage}" in plain.stderr  # says which storage it read
    # add again: rights change, the key stays, no key is printed
    again = run_cli("users", "add", "alice", "--storage", str(storage))
    assert again.exit_code == 0 and again.stdout == "" and "key is unchanged" in again.stderr
    reset = run_cli("users", "reset-key", "alice", "--storage", str(storage))
    assert reset.exit_code == 0
    new_key = reset.stdout.strip().splitlines()[-1]
    assert new_key != key and len(new_key) == 40
    assert len(list((storage / "users").iterdir())) == 2
    assert run_cli("users", "remove", "bob", "--storage", str(storage)).exit_code == 0
    gone = run_cli("users", "remove", "bob", "--storage", str(storage))
    assert gone.exit_code != 0 and "there is no user bob" in str(gone.exception)
    assert run_cli("users", "reset-key", "bob", "--storage", str(storage)).exit_code != 0


def test_refused_names_and_zones(tmp_path: Path) -> None:
    storage = str(tmp_path / "storage")
    for name in ["../x", ".hidden", "a b", "x" * 101]:
        done = run_cli("users", "add", name, "--storage", storage)
        assert done.exit_code == 2 and "a user name is" in done.output
    done = run_cli("users", "add", "carol", "--storage", storage, "--zone", "nowhere")
    assert done.exit_code != 0 and "no zone 'nowhere'" in str(done.exception)
