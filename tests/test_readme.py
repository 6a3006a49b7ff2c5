"""The README says what the code does: its model table and its two opening commands."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_model_table_matches_registry():
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "model_table.py"), "--check",
                          str(ROOT / "README.md")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_readme_opens_with_install_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    first = blocks[0]
    commands = [l for l in first.splitlines() if l.strip() and not l.startswith("#")]
    assert len(commands) == 2
    assert "pip install ." in commands[0] and "zoo finetune" in commands[0]
    assert 'pip install -e ".[test]"' in commands[1] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[test]"' in ci and "pytest" in ci
