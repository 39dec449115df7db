"""``poller check-config`` through the installed command, the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from poller.cli import main
from poller.commands.simulate import export_lines
from poller.simulator import Credentials

POLLER = str(Path(sys.executable).with_name("poller"))
REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "KEY-telnyx-s3cr3t-1"
CLIENT_SECRET = "bw-client-s3cr3t-2"
PASSWORD = "bw-basic-s3cr3t-3"
DB_PASSWORD = "db-s3cr3t-4"
SECRETS = (API_KEY, CLIENT_SECRET, PASSWORD, DB_PASSWORD)
SECRET_ENV = {"TELNYX_API_KEY": API_KEY, "BW_CLIENT_ID": "client-id",
              "BW_CLIENT_SECRET": CLIENT_SECRET, "BW_USERNAME": "api-user",
              "BW_PASSWORD": PASSWORD}
CLEARED = ("POLLER_CONFIG", "POLLER_DATABASE_URL", *SECRET_ENV)

GOOD = """
[database]
url = "sqlite:///history.db"

[[accounts]]
name = "telnyx-main"
provider = "telnyx"
api_key_env = "TELNYX_API_KEY"
conferences = ["3fa85f64-5717-4562-b3fc-2c963f66afa6",
               { id = "41b9acd4-f4da-4ff5-a85c-e07e90b53f46", region = "Europe" }]

[[accounts]]
name = "bandwidth-main"
provider = "bandwidth"
account_id = "9900000"
client_id_env = "BW_CLIENT_ID"
client_secret_env = "BW_CLIENT_SECRET"
conferences = ["conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9"]

[[accounts]]
name = "bandwidth-legacy"
provider = "bandwidth"
account_id = "9900001"
username_env = "BW_USERNAME"
password_env = "BW_PASSWORD"
"""


def poller(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``poller`` with only ``env`` on top of a cleaned environment."""
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return subprocess.run([POLLER, *args], capture_output=True, text=True, timeout=60,
                          env={**base, **env}, cwd=cwd, check=False)


def assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    """No secret value appears on stdout or stderr."""
    for secret in SECRETS:
        assert secret not in result.stdout
        assert secret not in result.stderr


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
           ) -> Callable[..., subprocess.CompletedProcess[str]]:
    """In-process ``poller.cli.main`` (same exit-code mapping, faster than a subprocess)."""

    def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
        for name in CLEARED:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, int(info.value.code or 0), out, err)

    return run


@pytest.fixture
def good_config(tmp_path: Path) -> Path:
    """A valid config file with Telnyx, Bandwidth OAuth2 and Bandwidth Basic accounts."""
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    return path


def test_good_file_exits_0_with_a_summary(good_config: Path) -> None:
    """A valid file with every variable set: exit 0, accounts, providers and counts listed."""
    result = poller("check-config", env=SECRET_ENV, cwd=good_config.parent)
    assert result.returncode == 0, result.stderr
    assert_no_secret(result)
    lines = result.stdout.splitlines()
    assert "config: config.toml" in lines
    assert any(line.startswith("database: sqlite:///history.db") for line in lines)
    assert "daemon: identity host:pid (default), lease 60 s, heartbeat every 15 s" in lines
    telnyx = next(line for line in lines if "telnyx-main" in line)
    assert "telnyx" in telnyx
    assert "2 conferences" in telnyx
    assert "$TELNYX_API_KEY" in telnyx
    assert "OAuth2" in next(line for line in lines if "bandwidth-main" in line)
    assert "Basic" in next(line for line in lines if "bandwidth-legacy" in line)
    assert lines[-1] == "config OK: 3 conferences in 3 accounts"


def test_database_password_is_masked(good_config: Path) -> None:
    """A PostgreSQL URL from POLLER_DATABASE_URL is shown with its password masked."""
    url = f"postgresql+psycopg://poller:{DB_PASSWORD}@db.example:5432/poller"
    result = poller("--config", str(good_config), "check-config",
                    env={**SECRET_ENV, "POLLER_DATABASE_URL": url}, cwd=good_config.parent)
    assert result.returncode == 0, result.stderr
    assert_no_secret(result)
    assert ("database: postgresql+psycopg://poller:***@db.example:5432/poller "
            "(from $POLLER_DATABASE_URL; auto_migrate off)") in result.stdout


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[polling]\nintervall_seconds = 5\n" + GOOD,
         "polling.intervall_seconds"),
        (GOOD.replace('region = "Europe"', 'region = "Mars"'),
         "accounts[0].conferences[1].region"),
        (GOOD.replace('api_key_env = "TELNYX_API_KEY"', f'api_key = "{API_KEY}"'),
         "accounts[0].api_key"),
        (GOOD.replace('password_env = "BW_PASSWORD"', f'password = "{PASSWORD}"'),
         "accounts[2].password"),
        (GOOD.replace("sqlite:///history.db", f"postgresql://poller:{DB_PASSWORD}@db/poller"),
         "database.url"),
        (GOOD.replace('name = "bandwidth-legacy"', 'name = "telnyx-main"'), "accounts[2].name"),
    ],
)
def test_bad_file_exits_2_naming_the_key(
    invoke: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, text: str, key: str
) -> None:
    """An invalid file: exit 2, one message on stderr naming the key, no secret echoed."""
    path = tmp_path / "config.toml"
    path.write_text(text)
    result = invoke("check-config", env=SECRET_ENV, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{key}: " in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert_no_secret(result)


@pytest.mark.parametrize(
    ("unset", "key"),
    [
        ("TELNYX_API_KEY", "accounts[0].api_key_env"),
        ("BW_CLIENT_SECRET", "accounts[1].client_secret_env"),
        ("BW_PASSWORD", "accounts[2].password_env"),
    ],
)
def test_missing_secret_exits_2_naming_the_variable(
    invoke: Callable[..., subprocess.CompletedProcess[str]], good_config: Path, unset: str,
    key: str,
) -> None:
    """An unset credential variable: exit 2, the message names the key and the variable."""
    env = {name: value for name, value in SECRET_ENV.items() if name != unset}
    result = invoke("check-config", env=env, cwd=good_config.parent)
    assert result.returncode == 2
    assert key in result.stderr
    assert f"environment variable {unset} is not set" in result.stderr
    assert_no_secret(result)


def test_poller_config_names_the_file(
    invoke: Callable[..., subprocess.CompletedProcess[str]], good_config: Path, tmp_path: Path
) -> None:
    """POLLER_CONFIG picks the file when --config is not given."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = invoke("check-config", env={**SECRET_ENV, "POLLER_CONFIG": str(good_config)},
                    cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert f"config: {good_config}" in result.stdout


def test_missing_config_file_exits_2(
    invoke: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """--config naming a file that does not exist: exit 2, the path named."""
    result = invoke("--config", "nope.toml", "check-config", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.toml" in result.stderr


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("nosuchdb://host/db", "no installed driver for 'nosuchdb'"),
        ("sqlite:///no/such/folder/history.db", "does not exist"),
    ],
)
def test_database_that_cannot_work_exits_2(
    invoke: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, url: str,
    fragment: str,
) -> None:
    """A database URL without a driver, or a SQLite file in a missing folder: exit 2."""
    result = invoke("check-config", env={"POLLER_DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2
    assert "database.url" in result.stderr
    assert fragment in result.stderr


def test_repository_example_passes_with_the_simulator_exports() -> None:
    """./config.toml passes once the variables `poller simulate` prints are exported."""
    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in export_lines(Credentials()).splitlines())
    result = poller("check-config", env=exports, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert "config OK: 40 conferences in 2 accounts" in result.stdout
    for name in ("TELNYX_API_KEY", "BW_CLIENT_SECRET", "BW_PASSWORD"):
        assert exports[name] not in result.stdout


def test_no_file_and_no_accounts_is_valid(tmp_path: Path) -> None:
    """Without any config file the defaults apply and check-config says there is nothing to poll."""
    empty = poller("check-config", env={}, cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert "config: none" in empty.stdout
    assert "nothing to poll" in empty.stdout


def test_bad_file_exits_2_as_a_subprocess(tmp_path: Path) -> None:
    """The installed command: a misspelt key exits 2 and names the key on stderr."""
    (tmp_path / "config.toml").write_text(GOOD + "[polling]\nconcurency = 8\n")
    result = poller("check-config", env=SECRET_ENV, cwd=tmp_path)
    assert result.returncode == 2
    assert "polling.concurency: unknown key (did you mean 'concurrency'?)" in result.stderr
    assert_no_secret(result)


def test_missing_secret_exits_2_as_a_subprocess(good_config: Path) -> None:
    """The installed command: an unset variable exits 2 and names it on stderr."""
    env = {name: value for name, value in SECRET_ENV.items() if name != "BW_CLIENT_ID"}
    result = poller("check-config", env=env, cwd=good_config.parent)
    assert result.returncode == 2
    assert "accounts[1].client_id_env: environment variable BW_CLIENT_ID is not set" in (
        result.stderr)
    assert_no_secret(result)


DISCOVERING = """
[[accounts]]
name = "telnyx-main"
provider = "telnyx"
api_key_env = "TELNYX_API_KEY"
discover = true
discover_regions = ["US", "Europe"]

[[accounts]]
name = "bandwidth-main"
provider = "bandwidth"
account_id = "9900000"
client_id_env = "BW_CLIENT_ID"
client_secret_env = "BW_CLIENT_SECRET"
discover = true
discover_name = "daily-standup"
list_polling = false

[[accounts]]
name = "bandwidth-legacy"
provider = "bandwidth"
account_id = "9900001"
username_env = "BW_USERNAME"
password_env = "BW_PASSWORD"
conferences = ["conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9"]
"""


def test_summary_says_which_accounts_discover(
    invoke: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path,
) -> None:
    """Accounts with no listed conferences but ``discover = true`` are not shown as idle."""
    (tmp_path / "config.toml").write_text(DISCOVERING)
    result = invoke("check-config", env=SECRET_ENV, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    telnyx = next(line for line in lines if "telnyx-main" in line)
    assert telnyx.endswith("; discovers every 60 s (US, Europe), list polling")
    bandwidth = next(line for line in lines if "bandwidth-main" in line)
    assert bandwidth.endswith("; discovers every 60 s (name 'daily-standup')")
    legacy = next(line for line in lines if "bandwidth-legacy" in line)
    assert "discovers" not in legacy
    assert "list polling" not in legacy
    assert lines[-1] == "config OK: 1 conference in 3 accounts, 2 of them discovering more"
