"""``rdsvend policy check``: exit 0, or 2 with the error on one line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from devtools.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


def test_check_accepts_the_example_policy() -> None:
    result = CliRunner().invoke(cli, ["policy", "check", str(REPO / "policies" / "access.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok (2 databases, 4 rules" in result.output


def test_check_refuses_with_one_line_naming_file_rule_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "policies" / "access.yaml").read_text().replace("10.0.0.0/8", "10.0.0.0/99"))
    proc = subprocess.run([sys.executable, "-m", "rdsvend.cli", "policy", "check", str(bad)],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"rdsvend: {bad}, rule 'orders-api', field 'conditions.source_ips': invalid CIDR '10.0.0.0/99'"]


def test_check_hostile_inputs_never_traceback(tmp_path: Path) -> None:
    cases = {
        "binary.yaml": b"\x00\xff\xfe" * 100,
        "tabs.yaml": b"\t\t- : :",
        "deep.yaml": b"[" * 50000,
        "python.yaml": b"!!python/object/apply:os.system ['true']",
    }
    runner = CliRunner()
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = runner.invoke(cli, ["policy", "check", str(path)])
        assert result.exit_code == 2, (name, result.output)
        assert "Traceback" not in result.output and str(path) in result.output
    missing = runner.invoke(cli, ["policy", "check", str(tmp_path / "missing.yaml")])
    assert missing.exit_code == 2 and "cannot read file" in missing.output
