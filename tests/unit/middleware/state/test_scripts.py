"""The Lua loader: every script is a file with a header naming its KEYS and ARGV, composed from
shared steps written once."""

from __future__ import annotations

import re

import pytest
import redis

from middleware.state import scripts
from middleware.state.scripts import (
    LUA_DIR,
    SHARED_DIR,
    ScriptFileError,
    Scripts,
    script_text,
    scripts_for,
)

SCRIPT_NAMES = sorted(path.stem for path in LUA_DIR.glob("*.lua"))
_POSITIONAL = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")


def _code_lines(name: str) -> list[str]:
    return [line for line in (LUA_DIR / f"{name}.lua").read_text().splitlines() if line.strip()]


def test_every_script_file_is_a_registered_script_and_every_registered_script_has_a_file() -> None:
    assert sorted(f for f in Scripts.__dataclass_fields__) == SCRIPT_NAMES


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_keys_and_argv_are_read_only_into_named_locals_on_the_first_lines(name: str) -> None:
    lines = _code_lines(name)
    header = [line for line in lines if line.startswith("--")]
    body = [line for line in lines if not line.startswith("--")]
    declaring = True
    for line in body:
        if declaring and not line.startswith("local "):
            declaring = False
        if not declaring:
            assert not _POSITIONAL.search(line), (
                f"{name}.lua reads {line.strip()!r} past its header"
            )
    declared = {m.group(0) for line in body for m in _POSITIONAL.finditer(line)}
    named = {m.group(0) for line in header for m in _POSITIONAL.finditer(line)}
    assert declared == named, f"{name}.lua: header and locals disagree"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_shared_steps_are_included_as_text_and_no_include_line_is_left(name: str) -> None:
    text = script_text(name)
    assert "-- @include" not in text
    for included in re.findall(r"^-- @include (\w+)", (LUA_DIR / f"{name}.lua").read_text(), re.M):
        assert (SHARED_DIR / f"{included}.lua").read_text().strip() in text


def test_dramatiqs_enqueue_and_the_settle_of_a_delivery_are_written_once() -> None:
    everything = "\n".join(p.read_text() for p in LUA_DIR.rglob("*.lua"))
    assert everything.count("redis.call('RPUSH'") == 1
    assert everything.count("redis.call('SISMEMBER'") == 1
    assert everything.count("redis.call('SREM', acks") == 1


def test_no_script_spells_a_job_state() -> None:
    from middleware.state.job_states import STATES

    for path in LUA_DIR.rglob("*.lua"):
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")
        )
        for state in STATES:
            assert f"'{state}'" not in code and f'"{state}"' not in code, (path.name, state)


def test_an_include_of_a_missing_shared_step_names_the_script_and_the_step(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "broken.lua").write_text("-- @include nowhere\nreturn 1\n")
    monkeypatch.setattr(scripts, "LUA_DIR", tmp_path)
    monkeypatch.setattr(scripts, "SHARED_DIR", tmp_path / "shared")
    script_text.cache_clear()
    try:
        with pytest.raises(ScriptFileError, match=r"broken\.lua: includes 'nowhere'"):
            script_text("broken")
    finally:
        script_text.cache_clear()


def test_scripts_are_registered_once_per_client() -> None:
    one, other = redis.Redis(), redis.Redis()
    assert scripts_for(one) is scripts_for(one)
    assert scripts_for(one) is not scripts_for(other)
    assert scripts_for(one).retry.sha == scripts_for(other).retry.sha
