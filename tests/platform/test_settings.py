"""Settings from the environment and a TOML file; every bad value is one clear line naming the variable."""

from __future__ import annotations

import os
from ipaddress import ip_network
from pathlib import Path

import pytest

from lapor.settings import SettingsError, load_settings
from tests.platform._servers import run_lapor

SECRET = "s3cret-" + "x" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("LAPOR_"):
            monkeypatch.delenv(name)


def test_defaults_keep_everything_under_the_data_directory(tmp_path):
    settings = load_settings(data=tmp_path)
    assert settings.store == f"sqlite:///{tmp_path}/events.db"
    assert settings.readmodels == f"sqlite:///{tmp_path}/readmodels.db"
    assert load_settings().data == Path("var")


def test_a_postgresql_store_keeps_read_models_in_the_same_database():
    settings = load_settings(store="postgresql://lapor@db:5432/lapor")
    assert settings.readmodels == "postgresql://lapor@db:5432/lapor"


def test_environment_variables_set_values_including_nested_ones(monkeypatch):
    monkeypatch.setenv("LAPOR_READINESS_MAX_LAG", "50")
    monkeypatch.setenv("LAPOR_LIMITS__SUBMISSION_RATE", "3/minute")
    monkeypatch.setenv("LAPOR_FIELD_LIMITS__TITLE", "120")
    settings = load_settings()
    assert settings.readiness_max_lag == 50
    assert settings.limits.submission_rate == "3/minute"
    assert settings.field_limits.title == 120


def test_the_networks_webhooks_may_reach_are_comma_separated_in_the_environment_and_a_list_in_the_file(
    tmp_path, monkeypatch
):
    assert load_settings().webhook_allowed_networks == ()
    monkeypatch.setenv("LAPOR_WEBHOOK_ALLOWED_NETWORKS", "10.20.0.0/16, fd00:20::/32,127.0.0.1")
    assert load_settings().webhook_allowed_networks == (
        ip_network("10.20.0.0/16"), ip_network("fd00:20::/32"), ip_network("127.0.0.1/32")
    )
    monkeypatch.delenv("LAPOR_WEBHOOK_ALLOWED_NETWORKS")
    config = tmp_path / "lapor.toml"
    config.write_text('webhook_allowed_networks = ["10.20.0.0/16"]\n')
    monkeypatch.setenv("LAPOR_CONFIG", str(config))
    assert load_settings().webhook_allowed_networks == (ip_network("10.20.0.0/16"),)


def test_a_toml_file_is_read_and_the_environment_and_flags_win_over_it(tmp_path, monkeypatch):
    config = tmp_path / "lapor.toml"
    config.write_text(
        'readiness_max_lag = 7\ntoken_ttl = "1d"\n[limits]\nmax_body_bytes = 4096\n'
        "[policy]\nfollow_up_days = 7\n"
    )
    monkeypatch.setenv("LAPOR_CONFIG", str(config))
    monkeypatch.setenv("LAPOR_TOKEN_TTL", "2h")
    settings = load_settings(readiness_max_lag=9)
    assert settings.limits.max_body_bytes == 4096
    assert settings.policy == {"follow_up_days": 7}
    assert settings.token_ttl == "2h"
    assert settings.readiness_max_lag == 9


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LAPOR_READINESS_MAX_LAG", "lots", "invalid setting LAPOR_READINESS_MAX_LAG: Input should be a valid "
                                            "integer, unable to parse string as an integer (got 'lots')"),
        ("LAPOR_STORE", "mysql://db/lapor", "invalid setting LAPOR_STORE: expected a URL like"),
        ("LAPOR_LIMITS__SUBMISSION_RATE", "ten a minute", "invalid setting LAPOR_LIMITS__SUBMISSION_RATE: not a "
                                                         "rate like '10/minute'"),
        ("LAPOR_TOKEN_TTL", "forever", "invalid setting LAPOR_TOKEN_TTL: expected a lifetime like 30m"),
        ("LAPOR_TOKEN_TTL", "99999999999d", "invalid setting LAPOR_TOKEN_TTL: a lifetime is at most 365000d"),
        ("LAPOR_FIELD_LIMITS__BODY", "50000", "invalid setting LAPOR_FIELD_LIMITS__BODY: Input should be less "
                                              "than or equal to 10000"),
        ("LAPOR_LOG_LEVEL", "chatty", "invalid setting LAPOR_LOG_LEVEL: expected DEBUG, INFO"),
        ("LAPOR_POLICY", '{"follow_up_days": 0}', "invalid setting LAPOR_POLICY: follow_up_days: Input should "
                                                  "be greater than or equal to 1"),
        ("LAPOR_POLICY", '{"follow_up_weeks": 1}', "invalid setting LAPOR_POLICY: follow_up_weeks: Extra inputs"),
        ("LAPOR_POLICY", "follow_up_days=7", "invalid setting LAPOR_POLICY: not valid JSON (Expecting value"),
        ("LAPOR_LIMITS", "{max_body_bytes: 4096}", "invalid setting LAPOR_LIMITS: not valid JSON (Expecting property"),
        ("LAPOR_WEBHOOK_ALLOWED_NETWORKS", "10.20.0.0/16, 10.30.1.0/16",
         "invalid setting LAPOR_WEBHOOK_ALLOWED_NETWORKS: expected networks like 10.20.0.0/16 or fd00::/8, "
         "comma-separated: 10.30.1.0/16 has host bits set (got '10.20.0.0/16, 10.30.1.0/16')"),
        ("LAPOR_DEMO_AGENCY", "pemda 35", "invalid setting LAPOR_DEMO_AGENCY: 'pemda 35' is not an agency id"),
        ("LAPOR_DEMO_UNIT", "pemda-53.71", "invalid setting LAPOR_DEMO_UNIT: expected a unit of LAPOR_DEMO_AGENCY "
                                           "(pemda-53.71), like pemda-53.71/dinkes (got 'pemda-53.71')"),
        ("LAPOR_WEBHOOK_ALLOWED_NETWORKS", "intranet.pemda",
         "invalid setting LAPOR_WEBHOOK_ALLOWED_NETWORKS: expected networks like 10.20.0.0/16 or fd00::/8, "
         "comma-separated: 'intranet.pemda' does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_is_wrong(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value).startswith(expected)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("memory", "unknown storage scheme : memory"),
        ("rediss+typo://:s3cret-pw@cache.lapor:6379", "unknown storage scheme : rediss+typo://…"),
    ],
)
def test_a_rate_limit_storage_that_cannot_be_used_is_one_line_without_its_password(monkeypatch, value, expected):
    """It was found out only when the first app opened, after the store: a traceback from `limits`, exit 1."""
    monkeypatch.setenv("LAPOR_LIMITS__STORAGE", value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value) == (
        f"invalid setting LAPOR_LIMITS__STORAGE: not a usable storage like memory:// or redis://host:6379: {expected}"
    )


@pytest.mark.parametrize("variable", ["LAPOR_STORE", "LAPOR_READMODELS"])
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("mysql://lapor:s3cret-pw@db.lapor/lapor", "'mysql://…'"),
        ("postgres ql://lapor:s3cret-pw@db.lapor/lapor", "'postgres ql://…'"),  # past urlsplit's parsing
        ("/srv/lapor/events.db", "'/srv/lapor/events.db'"),  # a path, no URL: nothing to hide
        # No `://` (session 31: quoted whole): a slash left out, or the scheme.
        ("postgresql:/lapor:s3cret-pw@db.lapor/lapor", "'postgresql:…'"),
        ("lapor:s3cret-pw@db.lapor/lapor", "'lapor:…'"),
    ],
)
def test_a_store_url_of_an_unknown_scheme_is_refused_without_its_password(tmp_path, monkeypatch, variable, value,
                                                                          shown):
    """The whole URL was quoted back, `(got 'mysql://lapor:s3cret-pw@db.lapor/lapor')`, on stderr and in the logs of
    whatever runs the command."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings(data=tmp_path)
    assert str(error.value) == (
        f"invalid setting {variable}: expected a URL like sqlite:///var/events.db or postgresql://host/db (got {shown})"
    )
    assert "s3cret-pw" not in str(error.value)


def test_a_holidays_file_that_cannot_be_read_is_said_of_its_own_variable(tmp_path, monkeypatch):
    """It was said of LAPOR_CONFIG ("LAPOR_CONFIG=None: [Errno 21] Is a directory"), which was not even set."""
    monkeypatch.setenv("LAPOR_HOLIDAYS_FILE", str(tmp_path))
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value) == f"invalid setting LAPOR_HOLIDAYS_FILE: {tmp_path}: Is a directory (got '{tmp_path}')"


def test_a_short_secret_is_refused_without_echoing_it(monkeypatch):
    monkeypatch.setenv("LAPOR_SECRET", "hunter2")
    with pytest.raises(SettingsError, match="LAPOR_SECRET: must be at least 32 characters") as error:
        load_settings()
    assert "hunter2" not in str(error.value)


def test_production_requires_a_secret(monkeypatch):
    monkeypatch.setenv("LAPOR_PRODUCTION", "true")
    with pytest.raises(SettingsError, match="LAPOR_SECRET is required"):
        load_settings()
    monkeypatch.setenv("LAPOR_SECRET", SECRET)
    assert load_settings().signing_secret() == SECRET


def test_production_refuses_a_training_clock(monkeypatch):
    monkeypatch.setenv("LAPOR_PRODUCTION", "true")
    monkeypatch.setenv("LAPOR_SECRET", SECRET)
    with pytest.raises(SettingsError, match="training"):
        load_settings(training=True)


def test_the_config_file_is_named_in_any_case_as_every_setting_is(tmp_path, monkeypatch):
    """pydantic-settings reads `lapor_production=true` as LAPOR_PRODUCTION, and the unknown-variable check lets
    `lapor_config` through as the file's path, but the file was looked up as LAPOR_CONFIG only: a server started
    with `lapor_config=/etc/lapor.toml` ran on its defaults, the file never read, without a word."""
    config = tmp_path / "lapor.toml"
    config.write_text("production = true\n")
    monkeypatch.setenv("lapor_config", str(config))
    with pytest.raises(SettingsError, match="LAPOR_SECRET is required when LAPOR_PRODUCTION is set"):
        load_settings(data=tmp_path)
    config.write_text("[limits]\nmax_bodyy = 5\n")
    with pytest.raises(SettingsError, match=r"unknown setting limits\.max_bodyy in LAPOR_CONFIG="):
        load_settings(data=tmp_path)
    config.write_text("[limits\n")
    with pytest.raises(SettingsError, match=f"LAPOR_CONFIG={config}"):
        load_settings(data=tmp_path)


def test_a_broken_toml_file_is_one_clear_line(tmp_path, monkeypatch):
    config = tmp_path / "lapor.toml"
    config.write_text("readiness_max_lag = \n")
    monkeypatch.setenv("LAPOR_CONFIG", str(config))
    with pytest.raises(SettingsError, match=f"LAPOR_CONFIG={config}"):
        load_settings()


def test_a_config_file_that_is_not_utf8_is_one_clear_line(tmp_path, monkeypatch):
    """Saved in Windows-1252 (an é in a comment): tomllib's UnicodeDecodeError was a traceback in every command."""
    config = tmp_path / "lapor.toml"
    config.write_bytes("# Pengaturan Dinas Perhubungan, diperbarui oleh José\nreadiness_max_lag = 7\n".encode("cp1252"))
    monkeypatch.setenv("LAPOR_CONFIG", str(config))
    with pytest.raises(SettingsError, match=f"^LAPOR_CONFIG={config}: 'utf-8' codec can't decode byte 0xe9"):
        load_settings()


def test_a_config_file_that_is_not_there_is_an_error_not_a_silent_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LAPOR_CONFIG", str(tmp_path / "lapr.toml"))
    with pytest.raises(SettingsError, match=r"lapr\.toml: no such file"):
        load_settings()


def test_an_unknown_key_in_the_file_is_refused(tmp_path, monkeypatch):
    config = tmp_path / "lapor.toml"
    config.write_text("readines_max_lag = 3\n")
    monkeypatch.setenv("LAPOR_CONFIG", str(config))
    with pytest.raises(SettingsError, match=f"^unknown setting readines_max_lag in LAPOR_CONFIG={config}$"):
        load_settings()


def test_a_bad_value_read_with_a_config_file_is_named_as_the_file_and_the_environment_name_it(tmp_path, monkeypatch):
    """With a file the value may come from either, so the message names both: the operator who wrote the file
    searched the environment for LAPOR_LIMITS__MAX_BODY_BYTES and found nothing."""
    config = tmp_path / "lapor.toml"
    config.write_text("[limits]\nmax_body_bytes = 10\n")
    monkeypatch.setenv("LAPOR_CONFIG", str(config))
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(
        f"invalid setting LAPOR_LIMITS__MAX_BODY_BYTES (limits.max_body_bytes in LAPOR_CONFIG={config}): "
    )


def test_without_a_secret_one_is_generated_once_kept_private_and_reused(tmp_path):
    first = load_settings(data=tmp_path).signing_secret()
    again = load_settings(data=tmp_path).signing_secret()
    assert first == again
    assert len(first) >= 32
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert load_settings(data=tmp_path / "elsewhere").signing_secret() != first


def test_the_cli_prints_one_line_and_exits_2_on_a_bad_setting(tmp_path):
    environment = {**os.environ, "LAPOR_READINESS_MAX_LAG": "-5", "LAPOR_DATA": str(tmp_path)}
    result = run_lapor("up", "--port", "0", env=environment)
    assert result.returncode == 2
    assert result.stderr == (
        "lapor: invalid setting LAPOR_READINESS_MAX_LAG: Input should be greater than or equal to 0 (got '-5')\n"
    )
    assert result.stdout == ""


def test_a_mistyped_variable_is_refused_with_the_setting_it_resembles(monkeypatch):
    """pydantic-settings passed unknown `LAPOR_*` variables over in silence: `LAPOR_PRODUCTON=true` started a
    server outside production, with a generated secret."""
    monkeypatch.setenv("LAPOR_PRODUCTON", "true")
    monkeypatch.setenv("lapor_scret", "x" * 40)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "unknown setting LAPOR_PRODUCTON (did you mean LAPOR_PRODUCTION?)" in str(refused.value)
    assert "unknown setting lapor_scret (did you mean LAPOR_SECRET?)" in str(refused.value)
    assert "x" * 40 not in str(refused.value)


def test_a_transport_url_is_refused_since_only_the_store_is_built(monkeypatch):
    monkeypatch.setenv("LAPOR_BUS", "kafka://broker:9092")
    with pytest.raises(SettingsError, match="LAPOR_BUS: only the store is built as a transport"):
        load_settings()


def test_the_config_path_and_the_test_suites_variables_are_not_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("LAPOR_REQUIRE_BACKENDS", "sqlite")
    monkeypatch.setenv("LAPOR_TEST_ANYTHING", "1")
    monkeypatch.setenv("LAPOR_LOG_LEVEL", "debug")
    assert load_settings(data=tmp_path).log_level == "DEBUG"


def test_a_demo_agency_without_its_unit_is_one_line_before_anything_starts(tmp_path):
    """The default demo unit (pemda-53.71/dinkes) is not inside another demo agency: `lapor up --demo` opened the
    store, then failed with a traceback while signing the unit officer's token."""
    environment = {**os.environ, "LAPOR_DEMO_AGENCY": "pemda-35.73", "LAPOR_DATA": str(tmp_path / "var")}
    result = run_lapor("up", "--demo", "--port", "0", env=environment)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "lapor: invalid setting LAPOR_DEMO_UNIT: expected a unit of LAPOR_DEMO_AGENCY (pemda-35.73), like "
        "pemda-35.73/dinkes (got 'pemda-53.71/dinkes')\n"
    )
    assert not (tmp_path / "var").exists()


def test_a_kept_secret_that_cannot_be_read_is_one_line(tmp_path):
    """A data directory whose secret cannot be read (another user's, or not a file) made `lapor token create` end in
    a traceback, and `lapor up` blame the store ("cannot open the store ... or the read models ...")."""
    data = tmp_path / "var"
    (data / "secret").mkdir(parents=True)
    for command in (["token", "create", "--role", "auditor"], ["up", "--port", "0"]):
        result = run_lapor(*command, "--data", str(data))
        assert (result.returncode, result.stdout) == (2, ""), command
        assert result.stderr == (
            f"lapor: {data}/secret: cannot read or keep the signing secret there (Is a directory); check --data or "
            "LAPOR_DATA, or set LAPOR_SECRET\n"
        )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0/minute", "a rate is at least one request in at least one unit of time, like '10/minute' (got '0/minute')"),
        ("10/0minute", "a rate is at least one request in at least one unit of time"),
        ("10/minute;1/second", "one rate like '10/minute', not 2: only the first would be applied"),
        ("10 per minute, 100 per hour", "one rate like '10/minute', not 2: only the first would be applied"),
    ],
)
@pytest.mark.parametrize("variable", ["SUBMISSION_RATE", "SMS_RATE", "STATISTICS_RATE"])
def test_a_rate_limit_that_would_not_be_applied_as_written_is_refused(monkeypatch, variable, value, expected):
    """Session 32: `limits.parse` took `10/minute;1/second` and enforced its first rate alone, took `0/minute`, which
    refused every submission with a 429 (the public complaint channel closed by a setting), and read `10/0minute` as
    `10/minute`."""
    monkeypatch.setenv(f"LAPOR_LIMITS__{variable}", value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value).startswith(f"invalid setting LAPOR_LIMITS__{variable}: {expected}")


@pytest.mark.parametrize("value", ["5 per 2 minutes", "1/Second", " 10 / minute "])
def test_one_rate_of_a_few_units_of_time_is_taken(monkeypatch, value):
    monkeypatch.setenv("LAPOR_LIMITS__SUBMISSION_RATE", value)
    assert load_settings().limits.submission_rate == value


@pytest.mark.parametrize("variable", ["LAPOR_STORE", "LAPOR_READMODELS", "LAPOR_DATA"])
@pytest.mark.parametrize("value", ["", "  "])
def test_a_place_given_empty_is_refused(monkeypatch, variable, value):
    """Session 32: `LAPOR_STORE=` (a Kubernetes Secret whose key is empty, `${STORE_URL}` unset in a shell) took
    the default, a new SQLite store in the data directory (a pod's emptyDir), and served: every report acknowledged
    there was lost with the pod. `LAPOR_DATA=` was the working directory."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value).startswith(f"invalid setting {variable}: is empty; leave it unset for the default")


def test_lapor_up_with_an_empty_store_url_says_so_and_makes_nothing(tmp_path):
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LAPOR_")}
    environment |= {"LAPOR_DATA": str(tmp_path / "var"), "LAPOR_STORE": ""}
    result = run_lapor("up", "--port", "0", env=environment)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("lapor: invalid setting LAPOR_STORE: is empty; leave it unset for the default "
                             "(sqlite:///<data>/events.db), or name it (got '')\n")
    assert not (tmp_path / "var").exists()


def test_an_empty_data_directory_on_the_command_line_is_refused(tmp_path):
    result = run_lapor("up", "--data", "", "--port", "0")
    assert result.returncode == 2
    assert "argument --data: is empty" in result.stderr
