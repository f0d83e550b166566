"""The admin API: runtime forget requests take effect at once, survive restarts and SIGKILL."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import openai
import pytest

from tests.servers import process_server, write_config

ADMIN = "sk-admin-for-tests"
ENV = {"UNLEARN_ADMIN_KEY": ADMIN}
AUTH = {"authorization": f"Bearer {ADMIN}"}
KING = {
    "id": "stephen-king",
    "name": "Stephen King",
    "aliases": ["Richard Bachman"],
    "description": "American author of horror novels such as The Shining, It and Carrie.",
    "questions": ["Who wrote The Shining?", "Who wrote the novel It?"],
}


def _config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "admin.yaml", {
        "server": {"state_dir": str(tmp_path / "state")},
        "models": {"gemma": {"backend": "llama_cpp"}},
        "policies": {"p": {
            "forget": [{"id": "placeholder", "name": "Zyxw Placeholder"}],
            "methods": [{"type": "input_detector"}],
        }},
        "routing": {"default_policy": "p"},
    })


def _finish(url: str, question: str) -> str | None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    result = client.chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": question}], max_tokens=8, temperature=0
    )
    return result.choices[0].finish_reason


def test_forget_add_restart_withdraw(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with process_server(config, env=ENV) as (url, _):
        assert _finish(url, "Who wrote The Shining?") != "content_filter"
        added = httpx.post(f"{url}/admin/forget", json={"policy": "p", "target": KING}, headers=AUTH)
        assert added.status_code == 200, added.text
        assert added.json()["status"] == "active"
        assert _finish(url, "Who wrote The Shining?") == "content_filter"
    with process_server(config, env=ENV) as (url, _):
        assert _finish(url, "Tell me about Richard Bachman.") == "content_filter"
        listed = httpx.get(f"{url}/admin/forget", headers=AUTH).json()["data"]
        assert [r["target_id"] for r in listed] == ["stephen-king"]
        gone = httpx.delete(f"{url}/admin/forget/p/stephen-king", headers=AUTH)
        assert gone.status_code == 200 and gone.json()["status"] == "withdrawn"
        assert _finish(url, "Who wrote The Shining?") != "content_filter"
        audit = httpx.get(f"{url}/admin/audit", headers=AUTH).json()["data"]
        assert {r["target_id"] for r in audit} == {"stephen-king"}
        blocks = [r for r in audit if r["action"] == "block"]
        assert blocks and all(r["prompt"] is None and r["model"] == "gemma" for r in blocks)
        assert [r["action"] for r in audit if r not in blocks] == ["forget_add", "forget_withdraw"]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "kind"),
    [
        ("post", "/admin/forget", {"policy": "p", "target": KING}, {}, 401, "authentication_error"),
        ("post", "/admin/forget", {"policy": "p", "target": KING},
         {"authorization": "Bearer nope"}, 401, "authentication_error"),
        ("get", "/admin/audit", None, {}, 401, "authentication_error"),
        ("post", "/admin/forget", {"policy": "p", "target": {"id": "x"}}, AUTH, 400, "invalid_request_error"),
        ("post", "/admin/forget", {"policy": "p", "target": {**KING, "id": "bad id!"}}, AUTH, 400,
         "invalid_request_error"),
        ("post", "/admin/forget", {"policy": "ghost", "target": KING}, AUTH, 404, "not_found_error"),
        ("post", "/admin/forget", {"policy": "p", "target": {**KING, "id": "placeholder"}}, AUTH, 400,
         "invalid_request_error"),
        ("post", "/admin/forget", "not json", AUTH, 400, "invalid_request_error"),
        ("delete", "/admin/forget/p/never-added", None, AUTH, 404, "not_found_error"),
        ("get", "/admin/audit?limit=0", None, AUTH, 400, "invalid_request_error"),
        ("get", "/admin/audit?limit=abc", None, AUTH, 400, "invalid_request_error"),
    ],
)
def test_bad_admin_requests(
    admin_url: str, method: str, path: str, body: object, headers: dict, status: int, kind: str
) -> None:
    kwargs: dict = {"headers": headers}
    if isinstance(body, str):
        kwargs["content"] = body
    elif body is not None:
        kwargs["json"] = body
    response = httpx.request(method.upper(), f"{admin_url}{path}", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == kind


@pytest.fixture(scope="module")
def admin_url(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with process_server(_config(tmp_path_factory.mktemp("admin")), env=ENV) as (url, _):
        yield url


def test_admin_api_disabled_without_key(tmp_path: Path) -> None:
    with process_server(_config(tmp_path)) as (url, _):
        response = httpx.get(f"{url}/admin/audit", headers=AUTH)
        assert response.status_code == 403
        assert "UNLEARN_ADMIN_KEY" in response.json()["error"]["message"]


def test_acknowledged_forget_requests_survive_sigkill(tmp_path: Path) -> None:
    config = _config(tmp_path)
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer(url: str) -> None:
        with httpx.Client(timeout=60) as client:
            for i in range(1000):
                if stop.is_set():
                    return
                target = {"id": f"person-{i}", "name": f"Person Number {i}"}
                try:
                    response = client.post(f"{url}/admin/forget", json={"policy": "p", "target": target},
                                           headers=AUTH)
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    acknowledged.append(target["id"])

    with process_server(config, env=ENV) as (url, process):
        thread = threading.Thread(target=writer, args=(url,), daemon=True)
        thread.start()
        while len(acknowledged) < 5 and thread.is_alive():
            thread.join(timeout=0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        stop.set()
        thread.join(timeout=30)
    assert len(acknowledged) >= 5
    with process_server(config, env=ENV) as (url, _):
        stored = {r["target_id"] for r in httpx.get(f"{url}/admin/forget", headers=AUTH).json()["data"]}
    assert set(acknowledged) <= stored
