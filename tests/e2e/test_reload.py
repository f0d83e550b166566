"""Hot reload: SIGHUP and file changes swap a good config in and keep the old one on a bad one."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from benchmarks.stub_upstream import build_app as build_stub
from proxy.core.config import load_config
from proxy.server import create_app
from tests.servers import process_server, thread_server, write_config


def _config(tmp_path: Path, model: str) -> dict:
    return {
        "server": {"state_dir": str(tmp_path / "state")},
        "models": {model: {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}},
    }


def _models(url: str) -> list[str]:
    return [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]


def _wait_for(url: str, expected: list[str], timeout_s: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while (seen := _models(url)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


def test_sighup_swaps_good_config_and_keeps_old_on_bad(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", _config(tmp_path, "first"))
    with process_server(path, extra_args=["--no-watch"]) as (url, process):
        assert _models(url) == ["first"]
        write_config(path, _config(tmp_path, "second"))
        process.send_signal(signal.SIGHUP)
        assert _wait_for(url, ["second"]) == ["second"]
        path.write_text("models: {second: {backend: nope}}\n", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "rejected" not in httpx.get(f"{url}/metrics").text and time.monotonic() < deadline:
            time.sleep(0.2)
        assert 'unlearn_config_reloads_total{result="rejected"} 1.0' in httpx.get(f"{url}/metrics").text
        assert _models(url) == ["second"]


def test_file_change_is_picked_up(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", _config(tmp_path, "first"))
    app = create_app(load_config(path), config_path=path, watch=True)
    with thread_server(app) as url:
        time.sleep(0.5)  # let the watcher start
        write_config(path, _config(tmp_path, "third"))
        assert _wait_for(url, ["third"]) == ["third"]
        path.write_text("server: {port: -1}\nmodels: {}\n", encoding="utf-8")
        time.sleep(2.0)
        assert _models(url) == ["third"]


def test_replace_style_saves_keep_being_picked_up(tmp_path: Path) -> None:
    """Editors and ConfigMaps write a new file and rename it over the config (os.replace):
    every such save is applied, not only the first."""
    path = write_config(tmp_path / "c.yaml", _config(tmp_path, "m0"))
    app = create_app(load_config(path), config_path=path, watch=True)
    with thread_server(app) as url:
        time.sleep(0.5)  # let the watcher start
        for i in range(1, 5):
            fresh = write_config(tmp_path / f".c.yaml.{i}.tmp", _config(tmp_path, f"m{i}"))
            os.replace(fresh, path)
            assert _wait_for(url, [f"m{i}"]) == [f"m{i}"], f"save {i} was not applied"
        (tmp_path / "unrelated.txt").write_text("x", encoding="utf-8")  # same bytes: no reload
        time.sleep(1.0)
        assert 'unlearn_config_reloads_total{result="applied"} 4.0' in httpx.get(
            f"{url}/metrics").text


def test_an_in_place_save_is_not_loaded_half_written(tmp_path: Path) -> None:
    """An in-place save truncates the file, then writes it: the watcher waits for the bytes
    instead of rejecting an empty config (and logging an error) on the way."""
    path = write_config(tmp_path / "c.yaml", _config(tmp_path, "m0"))
    app = create_app(load_config(path), config_path=path, watch=True)
    with thread_server(app) as url:
        time.sleep(0.5)  # let the watcher start
        for i in range(1, 3):
            with path.open("w", encoding="utf-8") as file:  # truncated now
                file.flush()
                time.sleep(0.6)  # past the watcher's debounce
                write_config(tmp_path / "next.yaml", _config(tmp_path, f"m{i}"))
                file.write((tmp_path / "next.yaml").read_text(encoding="utf-8"))
            assert _wait_for(url, [f"m{i}"]) == [f"m{i}"]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'unlearn_config_reloads_total{result="applied"} 2.0' in metrics
        assert 'result="rejected"' not in metrics


def test_server_settings_change_live_or_are_reported_as_needing_a_restart(tmp_path: Path) -> None:
    """A reloaded rate limit applies at once; a changed port or state_dir is counted as needing
    a restart and the running value is kept."""
    data = {**_config(tmp_path, "m"), "server": {"state_dir": str(tmp_path / "state"),
                                                  "rate_limit_per_minute": 3}}
    path = write_config(tmp_path / "c.yaml", data)
    app = create_app(load_config(path), config_path=path, watch=True)

    def statuses(url: str, n: int) -> list[int]:  # {} is a 400, after the rate limit
        return [httpx.post(f"{url}/v1/chat/completions", json={}).status_code for _ in range(n)]

    with thread_server(app) as url:
        time.sleep(0.5)  # let the watcher start
        assert statuses(url, 4) == [400, 400, 400, 429]
        data["server"] = {"state_dir": str(tmp_path / "elsewhere"), "port": 9999,
                          "rate_limit_per_minute": 1000}
        write_config(path, data)
        deadline = time.monotonic() + 20
        while 'result="applied"} 1.0' not in httpx.get(f"{url}/metrics").text:
            assert time.monotonic() < deadline, "the reload was not applied"
            time.sleep(0.2)
        assert statuses(url, 4) == [400] * 4
        metrics = httpx.get(f"{url}/metrics").text
        for setting in ("port", "state_dir"):
            assert f'unlearn_config_restart_needed_total{{setting="{setting}"}} 1.0' in metrics
        assert 'setting="host"' not in metrics
        assert app.state.holder.current.config.server.state_dir == str(tmp_path / "state")


def test_a_replaced_backend_is_closed_once_its_requests_finish(tmp_path: Path) -> None:
    """A reload that changes a model's base_url closes the old backend's upstream session, but
    only after the stream using it has ended."""
    with thread_server(build_stub(tokens=50, event_delay_ms=100)) as stub:  # a 5 s stream
        data = _config(tmp_path, "m")
        data["models"]["m"]["base_url"] = f"{stub}/v1"
        path = write_config(tmp_path / "c.yaml", data)
        app = create_app(load_config(path), config_path=path, watch=True)
        with thread_server(app) as url:
            time.sleep(0.5)  # let the watcher start
            old = app.state.holder.current.backends["m"]
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as answer:
                lines = answer.iter_lines()
                assert next(lines).startswith("data: ")
                data["models"]["m"]["base_url"] = stub.replace("127.0.0.1", "localhost") + "/v1"
                write_config(path, data)
                deadline = time.monotonic() + 20
                while app.state.holder.current.backends["m"] is old:
                    assert time.monotonic() < deadline, "the reload was not applied"
                    time.sleep(0.1)
                time.sleep(0.5)
                assert old._session is not None and not old._session.closed  # still streaming
                assert [line for line in lines if line][-1] == "data: [DONE]"
            deadline = time.monotonic() + 5
            while not old._session.closed and time.monotonic() < deadline:
                time.sleep(0.1)
            assert old._session.closed
            assert httpx.post(f"{url}/v1/chat/completions", timeout=30,
                              json={**body, "stream": False}).status_code == 200
