"""Each command imports only what it uses: `--version` nothing, an offline `validate` no
HTTP, AWS, logging or display library, and no command rich unless it draws."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LOADED = (
    "import sys\n"
    "from mirror.entry import main\n"
    "code = main({argv!r})\n"
    "watched = {{'httpx', 'boto3', 'botocore', 'pydantic', 'structlog', 'rich', 'ruamel',\n"
    "           'tenacity', 'semantic_version', 'schedule'}}\n"
    "print(sorted({{m.split('.')[0] for m, module in list(sys.modules.items())\n"
    "              if module is not None and m.split('.')[0] in watched}}))\n"
    "sys.exit(code)\n"
)


def loaded(argv: list[str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(argv=argv)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])  # our own print, one line


def test_version_imports_nothing():
    assert loaded(["--version"]) == []


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "mirror.yaml"
    images = "".join(f"  - example/image{i}:1.{i}\n" for i in range(100))
    path.write_text(
        "version: 1\ntarget: {kind: registry, registry_url: 'http://127.0.0.1:9'}\n"
        f"images:\n{images}"
    )
    return path


def test_an_offline_validate_loads_no_http_aws_logging_or_display_library(config):
    assert loaded(["validate", "--config", str(config)]) == ["pydantic", "ruamel"]


def test_a_sync_keeps_rich_and_httpxs_own_cli_out_until_a_display_needs_them(config):
    code = (
        "import sys\n"
        "from mirror.console.startup import allow_rich, keep_out_unused_imports\n"
        "keep_out_unused_imports()\n"
        "import httpx, structlog\n"
        "print('rich' in sys.modules and sys.modules['rich'] is not None)\n"
        "allow_rich()\n"
        "import rich.console\n"
        "print(type(rich.console.Console()).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "Console"]
