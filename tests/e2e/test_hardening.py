"""Hardening (issue 18): what an attacker or a careless operator sends never reads server files,
bricks the store, denies service to others, leaks a key, or gets a 500."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import logging
import re
import select
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from benchmarks.stub_upstream import build_app as build_stub
from proxy.core.config import parse_config
from proxy.server import create_app
from proxy.store import SqliteStore
from tests.servers import (
    bag_of_words, fake_embedder, fake_upstream, process_output, process_server, thread_server,
    write_config,
)

ADMIN = "sk-admin-for-hardening-tests"
AUTH = {"authorization": f"Bearer {ADMIN}"}
TARGET = {"id": "target-person", "name": "Target Person", "questions": ["Who is Target Person?"]}
POISON = "POISON-PILL"  # text the fake embedder refuses to embed


@pytest.fixture(autouse=True)
def _admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNLEARN_ADMIN_KEY", ADMIN)


async def _embeddings(request: Request) -> Any:
    body = await request.json()
    texts = body["input"]
    # a model's time: concurrent requests share batches; "slow" makes a compile take a while
    await asyncio.sleep(1.0 if body["model"] == "slow" else 0.02)
    if any(POISON in t for t in texts):
        return JSONResponse({"error": {"message": "cannot embed that"}}, status_code=500)
    return {"object": "list", "data": [
        {"index": i, "embedding": bag_of_words(t)} for i, t in enumerate(texts)]}



@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with thread_server(build_stub(latency_ms=0, tokens=4)) as url:
        yield url


@pytest.fixture(scope="module")
def embed_url() -> Iterator[str]:
    with thread_server(fake_embedder(_embeddings)) as url:
        yield url


def _config(state_dir: Path, stub_url: str, embed_url: str, **policy: Any) -> Any:
    return parse_config(_config_data(state_dir, stub_url, embed_url, **policy))


def _config_data(state_dir: Path, stub_url: str, embed_url: str, **policy: Any) -> dict[str, Any]:
    return {
        "server": {"state_dir": str(state_dir)},
        "models": {"stub": {"backend": "openai", "base_url": f"{stub_url}/v1"}},
        "policies": {"p": {
            "forget": [TARGET],
            "embedder": {"type": "openai", "base_url": f"{embed_url}/v1", "model": "bow"},
            "methods": [{"type": "input_detector", "aliases": False}],
            **policy,
        }},
        "routing": {"default_policy": "p"},
    }


def _forget(url: str, target: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/admin/forget", json={"policy": "p", "target": target}, headers=AUTH,
                      timeout=30)


def _stored(url: str) -> list[str]:
    rows = httpx.get(f"{url}/admin/forget", headers=AUTH).json()["data"]
    return [r["target_id"] for r in rows]


def _finish(url: str, question: str) -> str:
    """The finish reason of a chat request; ``question`` is JSON string text, so a lone
    surrogate is sent as the escape ``\\udfff`` (as any JSON client can)."""
    body = '{"model": "stub", "messages": [{"role": "user", "content": "%s"}]}' % question
    response = httpx.post(f"{url}/v1/chat/completions", timeout=30, content=body.encode(),
                          headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["finish_reason"])


@pytest.mark.parametrize(("document", "param"), [
    ({"path": "/proc/self/environ"}, "target.documents.0.path"),
    ({"path": "../../../../etc/hostname"}, "target.documents.0.path"),
    ({"text": "x" * 100_001}, "target.documents.0.text"),
])
def test_admin_documents_are_text_only_and_capped(
    tmp_path: Path, stub_url: str, embed_url: str, document: dict[str, str], param: str
) -> None:
    with thread_server(create_app(_config(tmp_path, stub_url, embed_url))) as url:
        response = _forget(url, {"id": "leak", "name": "Leak Person", "documents": [document]})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param
        assert _stored(url) == []


def test_a_target_that_fails_to_compile_is_not_stored(
    tmp_path: Path, stub_url: str, embed_url: str
) -> None:
    config = _config(tmp_path, stub_url, embed_url)
    app = create_app(config)
    with thread_server(app) as url:
        live = app.state.holder.current.policies["p"]
        poisoned = {"id": "poisoned", "name": "Someone Else", "description": POISON}
        for _ in range(2):
            response = _forget(url, poisoned)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == "target"
        assert _stored(url) == [] and app.state.holder.current.policies["p"] is live
        added = _forget(url, {"id": "other", "name": "Other Person", "questions": ["Who is Other Person?"]})
        assert added.status_code == 200, added.text
        assert _finish(url, "Who is Other Person?") == "content_filter"
    with thread_server(create_app(config)) as url:  # a restart over the same state_dir
        assert _stored(url) == ["other"]
        assert _finish(url, "Who is Other Person?") == "content_filter"
        assert _finish(url, "What is the capital of France?") != "content_filter"


def test_a_stored_document_path_is_kept_flagged_and_never_read(
    tmp_path: Path, stub_url: str, embed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows an older version accepted, with document paths (a directory, a real file): the
    server starts, reads neither, still enforces the rest of each target (its name), logs what
    it leaves out, keeps the rows as stored and flags them in the listing; a row unusable even
    without its paths is left out whole."""
    secret = tmp_path / "server-file.txt"
    secret.write_text("SERVER-FILE-MARKER-5521 is in here", encoding="utf-8")
    store = SqliteStore(tmp_path / "unlearn.sqlite3")
    store.add_forget("p", {"id": "old-dir", "name": "Old Person", "documents": [{"path": "/etc"}]})
    store.add_forget("p", {"id": "old-file", "name": "Older Person",
                           "documents": [{"text": "inline"}, {"path": str(secret)}]})
    store.add_forget("p", {"id": "broken", "documents": [{"path": "/etc"}]})  # no name
    store.close()
    caplog.set_level(logging.WARNING, logger="unlearn_proxy")
    for _ in range(2):  # a start, then a restart (after another forget request compiled)
        caplog.clear()
        with thread_server(create_app(_config(tmp_path, stub_url, embed_url))) as url:
            for question in ("Who is Target Person?", "Who is Old Person?",
                             "Who is Older Person?"):
                assert _finish(url, question) == "content_filter", question
            rows = httpx.get(f"{url}/admin/forget", headers=AUTH).json()["data"]
            if len(rows) == 3:
                assert _forget(url, _person(1)).status_code == 200
        skipped = {r["target_id"]: r["skipped"] for r in rows}
        assert skipped["old-dir"] == skipped["old-file"].replace(" 1:", " 0:") == (
            "documents 0: a document path (from an older version) is not read")
        assert "name" in skipped["broken"]
        messages = [r.getMessage() for r in caplog.records]
        for target_id, said in (("old-dir", "enforced without part of it"),
                                ("old-file", "enforced without part of it"),
                                ("broken", "left out, not enforced")):
            assert any(target_id in m and said in m for m in messages), messages
        stored = {r["target_id"]: r["target"] for r in rows}
        assert stored["old-file"]["documents"] == [{"text": "inline"}, {"path": str(secret)}]
    assert skipped.get("person-1", "absent") is None
    artefacts = [p for p in (tmp_path / "artefacts").rglob("*") if p.is_file()]
    assert artefacts and not [p for p in artefacts if b"SERVER-FILE-MARKER" in p.read_bytes()]


def test_a_lone_surrogate_does_not_hide_a_forget_question(
    tmp_path: Path, stub_url: str, embed_url: str
) -> None:
    config = _config(tmp_path, stub_url, embed_url, fail_mode="open")
    with thread_server(create_app(config)) as url:
        assert _finish(url, "Who is Target Person? \\udfff") == "content_filter"
        assert _finish(url, "Who is \\u0000Target Person?") == "content_filter"
        metrics = httpx.get(f"{url}/metrics").text
        assert "unlearn_sanitised_strings_total 2.0" in metrics


def test_surrogates_from_one_client_deny_no_one_else(
    tmp_path: Path, stub_url: str, embed_url: str
) -> None:
    config = _config(tmp_path, stub_url, embed_url, fail_mode="closed")
    with thread_server(create_app(config)) as url:
        stop = threading.Event()

        def attacker(n: int) -> None:
            for i in range(10_000):
                if stop.is_set():
                    return
                _finish(url, f"hi {n} {i} \\udfff")

        answers: list[str] = []
        attackers = [threading.Thread(target=attacker, args=(n,), daemon=True) for n in range(2)]
        for thread in attackers:
            thread.start()
        try:
            def innocent(n: int) -> None:
                for i in range(15):  # distinct texts: no answer comes from the embedding cache
                    answers.append(_finish(url, f"What is the capital of country {n}-{i}?"))

            innocents = [threading.Thread(target=innocent, args=(n,)) for n in range(4)]
            for thread in innocents:
                thread.start()
            for thread in innocents:
                thread.join(timeout=120)
        finally:
            stop.set()
            for thread in attackers:
                thread.join(timeout=30)
    assert len(answers) == 60 and "content_filter" not in answers, answers


def test_admin_input_limits(tmp_path: Path, stub_url: str, embed_url: str) -> None:
    config = parse_config({**_config(tmp_path, stub_url, embed_url).model_dump(),
                           "server": {"state_dir": str(tmp_path), "max_body_bytes": 10_000}})
    with thread_server(create_app(config)) as url:
        huge = httpx.get(f"{url}/admin/audit?after=99999999999999999999", headers=AUTH)
        assert huge.status_code == 400 and huge.json()["error"]["param"] == "after"
        nested = httpx.post(f"{url}/admin/forget", content="[" * 1000, headers=AUTH)
        assert nested.status_code == 400, nested.text
        assert nested.json()["error"]["type"] == "invalid_request_error"

        def chunks() -> Iterator[bytes]:  # no content-length: the size shows while reading
            yield b'{"policy": "p", "target": {"id": "big", "name": "'
            yield b"x" * 20_000
            yield b'"}}'

        big = httpx.post(f"{url}/admin/forget", content=chunks(), headers=AUTH)
        assert big.status_code == 413, big.text
        assert big.json()["error"]["type"] == "invalid_request_error"
        assert _stored(url) == []


UPSTREAM_KEY = "upstream-key-of-no-known-shape-7f3a"
GENERIC = "sk-live-someone-elses-key-0123456789"


async def _echoing_upstream(request: Request) -> Any:
    """Fault injection: errors that echo the proxy's credentials and a stray key, as an HTTP
    error, or as an SSE error event before or after the first content chunk."""
    body = await request.json()
    echoed = f"rejected {request.headers.get('authorization')} (raw {UPSTREAM_KEY}, also {GENERIC})"
    error = json.dumps({"error": {"message": echoed}})
    question = body["messages"][-1]["content"]
    if not body.get("stream"):
        return JSONResponse(json.loads(error), status_code=400)
    content = json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0,
                          "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    events = ([] if question == "early" else [content]) + [error]
    return StreamingResponse((f"data: {e}\n\n" for e in events), media_type="text/event-stream")


def test_keys_never_reach_a_client_or_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HARDENING_UPSTREAM_KEY", UPSTREAM_KEY)
    caplog.set_level(logging.DEBUG)
    with thread_server(fake_upstream(_echoing_upstream)) as upstream:
        config = parse_config({
            "server": {"state_dir": str(tmp_path)},
            "models": {"m": {"backend": "openai", "base_url": f"{upstream}/v1",
                             "api_key_env": "HARDENING_UPSTREAM_KEY"}},
        })
        with thread_server(create_app(config)) as url:
            seen = []
            for question, stream in [("plain", False), ("early", True), ("late", True)]:
                response = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
                    "model": "m", "stream": stream,
                    "messages": [{"role": "user", "content": question}]})
                assert "rejected" in response.text and "***" in response.text, response.text
                seen.append(response.text)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "stream ended with UpstreamError" in logged  # the SSE path was taken, and logged
    for text in [*seen, logged]:
        assert UPSTREAM_KEY not in text and GENERIC not in text and "Bearer upstream" not in text


def _person(i: int) -> dict[str, Any]:
    """A target whose name shares no word with any other's (bag-of-words similarity 0)."""
    name = f"Qz{i}x Vr{i}k"
    return {"id": f"person-{i}", "name": name, "questions": [name]}


def _reloads_applied(url: str) -> float:
    found = re.search(r'unlearn_config_reloads_total\{result="applied"\} (\S+)',
                      httpx.get(f"{url}/metrics").text)
    return float(found.group(1)) if found else 0.0


def test_forget_requests_acknowledged_during_reloads_stay_live(
    tmp_path: Path, stub_url: str, embed_url: str
) -> None:
    """SIGHUP reloads whose slow second policy leaves a window between reading the store and
    swapping: forget requests added and withdrawn in that window are live after the swap."""
    path = tmp_path / "c.yaml"

    def save(round_: int) -> None:
        data = _config_data(tmp_path / "state", stub_url, embed_url)
        data["policies"]["slow"] = {  # new retain questions each round: embedded anew
            "forget": [{"id": "slow-person", "name": "Slow Person"}],
            "retain": [{"question": f"Round {round_} question {j}?", "answer": "Yes."}
                       for j in range(3)],
            "embedder": {"type": "openai", "base_url": f"{embed_url}/v1", "model": "slow"},
            "methods": [{"type": "icul", "s": 2}],
        }
        write_config(tmp_path / "next.yaml", data).replace(path)

    save(0)
    live: list[dict[str, Any]] = []
    withdrawn: list[dict[str, Any]] = []
    with process_server(path, extra_args=["--no-watch"]) as (url, process):
        for round_ in range(1, 5):
            save(round_)
            process.send_signal(signal.SIGHUP)
            time.sleep(0.1)  # the reload has read the store and is embedding
            for person in (_person(2 * round_), _person(2 * round_ + 1)):
                assert _forget(url, person).status_code == 200
                live.append(person)
            gone = live.pop(0)
            assert httpx.delete(f"{url}/admin/forget/p/{gone['id']}", headers=AUTH).status_code == 200
            withdrawn.append(gone)
            deadline = time.monotonic() + 60
            while _reloads_applied(url) < round_ and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _reloads_applied(url) == round_
            assert _stored(url) == [t["id"] for t in live]
            assert [t["id"] for t in live if _finish(url, t["name"]) != "content_filter"] == []
            assert [t["id"] for t in withdrawn if _finish(url, t["name"]) == "content_filter"] == []


def test_one_of_concurrent_forget_requests_with_one_id_is_stored(
    tmp_path: Path, stub_url: str, embed_url: str
) -> None:
    """The id is checked under the lock that stores it: of six different targets sent at once
    with one id, one wins and the others are told the id exists; the same six sent again,
    the winner is acknowledged again (a retry) and the others still refused."""
    with thread_server(create_app(_config(tmp_path, stub_url, embed_url))) as url:
        targets = [{**_person(1), "name": f"Qz1x Vr1k the {k}th"} for k in range(6)]
        first: list[int] = []
        for round_ in range(2):
            answers: dict[int, httpx.Response] = {}
            threads = [threading.Thread(
                target=lambda k=k: answers.__setitem__(k, _forget(url, targets[k])))
                for k in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert _stored(url) == ["person-1"]
            assert sorted(a.status_code for a in answers.values()) == [200, 400, 400, 400, 400, 400]
            for error in (a.json()["error"] for a in answers.values() if a.status_code == 400):
                assert error["param"] == "target.id" and "already exists" in error["message"], error
            winners = [k for k, a in answers.items() if a.status_code == 200]
            first = first or winners
            assert winners == first, round_


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_openapi_ref_resolves(tmp_path: Path, stub_url: str, embed_url: str) -> None:
    with thread_server(create_app(_config(tmp_path, stub_url, embed_url))) as url:
        document = httpx.get(f"{url}/openapi.json").json()
    refs = set(_refs(document))
    assert refs and "$defs" not in json.dumps(document)
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]
    bodies = {path: op["requestBody"]["content"]["application/json"]["schema"]
              for path, item in document["paths"].items() for op in item.values()
              if "requestBody" in op}
    assert {"/v1/chat/completions", "/v1/completions", "/admin/forget",
            "/admin/retain/remove"} <= set(bodies)


def test_metrics_and_docs_can_require_a_key(tmp_path: Path, stub_url: str, embed_url: str) -> None:
    data = _config_data(tmp_path, stub_url, embed_url)
    data["server"].update(api_keys=["sk-client-1"], protect_metrics=True, protect_docs=True)
    client = {"authorization": "Bearer sk-client-1"}
    with thread_server(create_app(parse_config(data))) as url:
        for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):
            for headers in ({}, {"authorization": "Bearer sk-wrong"}):
                response = httpx.get(f"{url}{path}", headers=headers)
                assert response.status_code == 401, (path, response.text)
                assert response.json()["error"]["type"] == "authentication_error"
            for headers in (client, AUTH):
                assert httpx.get(f"{url}{path}", headers=headers).status_code == 200, path
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{url}/healthz", headers=AUTH).json()["policies"] == ["p"]
    with thread_server(create_app(_config(tmp_path, stub_url, embed_url))) as url:  # default: open
        for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):
            assert httpx.get(f"{url}{path}").status_code == 200, path
        assert httpx.get(f"{url}/healthz").json()["models"] == ["stub"]


def _fingerprint(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def test_audit_names_the_key_and_model_of_blocks_and_admin_actions(
    tmp_path: Path, stub_url: str, embed_url: str
) -> None:
    """Blocks carry the client key's fingerprint and the model, admin actions the admin key's
    (never a key); a database made before these columns existed gets them."""
    raw = sqlite3.connect(tmp_path / "unlearn.sqlite3")  # the audit table of older versions
    raw.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, "
                "policy TEXT, request_id TEXT NOT NULL, action TEXT NOT NULL, method TEXT, "
                "target_id TEXT, item TEXT, score REAL, prompt TEXT)")
    raw.execute("INSERT INTO audit(ts, request_id, action) VALUES (0, 'old', 'block')")
    raw.commit()
    raw.close()
    data = _config_data(tmp_path, stub_url, embed_url)
    data["server"]["api_keys"] = ["sk-client-1"]
    with thread_server(create_app(parse_config(data))) as url:
        assert _forget(url, _person(1)).status_code == 200
        blocked = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                             headers={"authorization": "Bearer sk-client-1"},
                             json={"model": "stub", "messages": [
                                 {"role": "user", "content": "Who is Target Person?"}]})
        assert blocked.json()["choices"][0]["finish_reason"] == "content_filter"
        assert httpx.delete(f"{url}/admin/forget/p/person-1", headers=AUTH).status_code == 200
        rows = httpx.get(f"{url}/admin/audit", headers=AUTH).json()["data"]
    assert [(r["request_id"], r["actor"], r["model"]) for r in rows[:1]] == [("old", None, None)]
    assert [(r["action"], r["target_id"], r["actor"], r["model"]) for r in rows[1:]] == [
        ("forget_add", "person-1", _fingerprint(ADMIN), None),
        ("block", "target-person", _fingerprint("sk-client-1"), "stub"),
        ("forget_withdraw", "person-1", _fingerprint(ADMIN), None),
    ]
    assert ADMIN not in json.dumps(rows) and "sk-client-1" not in json.dumps(rows)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/admin/forget"])
def test_a_trickling_body_is_cut_off(
    tmp_path: Path, stub_url: str, embed_url: str, path: str
) -> None:
    data = _config_data(tmp_path, stub_url, embed_url)
    data["server"]["body_timeout_s"] = 1.0
    with thread_server(create_app(parse_config(data))) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Authorization: Bearer {ADMIN}\r\nContent-Length: 1000\r\n\r\n{{".encode())
            started, answer = time.monotonic(), b""
            while b"\r\n\r\n" not in answer and time.monotonic() - started < 8:
                try:
                    sock.sendall(b" ")  # one byte every 0.2 s: 1000 bytes would take 200 s
                    sock.settimeout(0.2)
                    answer += sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:  # closed by the server
                    break
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < 4.0
    assert b'"type":"invalid_request_error"' in answer and b"request_timeout" in answer


def test_trickling_headers_are_cut_off(tmp_path: Path, stub_url: str, embed_url: str) -> None:
    """Headers sent a byte at a time (inside the deadline each time), a connection that sends
    nothing, and a keep-alive connection trickling its second request are all closed once
    ``server.header_timeout_s`` is up, while a normal request is served."""
    data = _config_data(tmp_path / "state", stub_url, embed_url)
    data["server"]["header_timeout_s"] = 1.0
    with process_server(write_config(tmp_path / "c.yaml", data)) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        trickling = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        kept = socket.create_connection(("127.0.0.1", port))
        kept.sendall(head + b"\r\n")
        first = b""
        while b'"status":"ok"' not in first:
            first += kept.recv(65536)
        started = time.monotonic()
        answers = {sock: b"" for sock in [*trickling, *idle, kept]}
        closed: dict[socket.socket, float] = {}
        for sock in [*trickling, kept]:
            sock.sendall(head + b"X-Slow: ")
        try:
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            while len(closed) < len(answers) and time.monotonic() - started < 8:
                for sock in [*trickling, kept]:
                    if sock not in closed:
                        try:
                            sock.sendall(b"a")  # one byte every 0.2 s, never the blank line
                        except OSError:
                            pass
                readable, _, _ = select.select([s for s in answers if s not in closed], [], [], 0.2)
                for sock in readable:
                    try:
                        part = sock.recv(65536)
                    except OSError:
                        part = b""
                    answers[sock] += part
                    if not part:
                        closed[sock] = time.monotonic() - started
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        finally:
            for sock in answers:
                sock.close()
    assert len(closed) == len(answers), f"{len(answers) - len(closed)} connections still open"
    assert max(closed.values()) < 4.0
    for sock in [*trickling, kept]:
        assert answers[sock].startswith(b"HTTP/1.1 408"), answers[sock][:200]
        assert b'"code": "request_timeout"' in answers[sock]
    assert all(answers[sock] == b"" for sock in idle)


def test_a_500_keeps_the_keep_alive_connection(tmp_path: Path, stub_url: str, embed_url: str) -> None:
    """A real server fault (another process holds the store's write lock) is a 500
    ``server_error`` envelope, and the next request on the same connection is served."""
    with thread_server(create_app(_config(tmp_path, stub_url, embed_url))) as url:
        assert _forget(url, _person(1)).status_code == 200
        connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
        connection.request("GET", "/admin/forget", headers=AUTH)
        assert connection.getresponse().read() and connection.sock is not None
        local = connection.sock.getsockname()
        locker = sqlite3.connect(tmp_path / "unlearn.sqlite3", timeout=0)
        locker.execute("BEGIN IMMEDIATE")  # the store's writes wait for it, then fail
        try:
            connection.request("DELETE", "/admin/forget/p/person-1", headers=AUTH)
            failed = connection.getresponse()
            body = json.loads(failed.read())
        finally:
            locker.rollback()
            locker.close()
        assert failed.status == 500 and body["error"]["type"] == "server_error", body
        connection.request("GET", "/admin/forget", headers=AUTH)
        listed = connection.getresponse()
        assert listed.status == 200 and connection.sock.getsockname() == local
        assert [r["target_id"] for r in json.loads(listed.read())["data"]] == ["person-1"]
        connection.close()
        assert _finish(url, "Qz1x Vr1k") == "content_filter"  # the failed withdrawal changed nothing


EMBED_KEY = "embed-key-of-no-known-shape-91c2"


async def _key_echoing_embeddings(request: Request) -> Any:
    """Fault injection: an embedder whose error echoes the key it was sent and a stray key."""
    texts = (await request.json())["input"]
    if any(POISON in t for t in texts):
        message = f"cannot embed for {request.headers.get('authorization')} (also {GENERIC})"
        return JSONResponse({"error": {"message": message}}, status_code=500)
    return {"object": "list", "data": [
        {"index": i, "embedding": bag_of_words(t)} for i, t in enumerate(texts)]}


def test_guard_failure_tracebacks_are_redacted_in_the_log(tmp_path: Path, stub_url: str) -> None:
    """A failing embedder's error (and so the guard failure's logged traceback) carries the
    embedder key: the server's log shows the failure, never the key."""
    with thread_server(fake_embedder(_key_echoing_embeddings)) as embedder:
        data = _config_data(tmp_path / "state", stub_url, embedder)
        data["policies"]["p"]["embedder"]["api_key_env"] = "HARDENING_EMBED_KEY"
        config = write_config(tmp_path / "c.yaml", data)
        with process_server(config, env={"HARDENING_EMBED_KEY": EMBED_KEY},
                            extra_args=["--log-level", "debug"]) as (url, process):
            response = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
                "model": "stub", "messages": [{"role": "user", "content": f"Who is {POISON}?"}]})
            assert response.status_code in (200, 503), response.text  # fail_mode closed
            logged = process_output(process)
    assert "input_detector" in logged and "EmbedderError" in logged, logged[-3000:]
    assert "Bearer ***" in logged  # the failure's message is logged, redacted
    assert EMBED_KEY not in logged and GENERIC not in logged
    assert EMBED_KEY not in response.text and GENERIC not in response.text


def test_retain_removals_racing_forget_requests_stay_removed(
    tmp_path: Path, stub_url: str, embed_url: str
) -> None:
    """Retain removals while forget requests compile (slowly) and are withdrawn: afterwards
    the live runtime is what the store says (every removed question is out of the ICUL pool,
    every active forget request is live, no withdrawn one), and so is a restart's."""
    retain = [{"question": f"Retain question {j}?", "answer": "Yes."} for j in range(16)]
    data = _config_data(tmp_path, stub_url, embed_url, retain=retain)
    data["policies"]["p"]["embedder"]["model"] = "slow"  # every new text takes 1 s to embed
    data["policies"]["p"]["methods"].append({"type": "icul", "s": 2})
    app = create_app(parse_config(data))
    removed: list[str] = []
    with thread_server(app) as url:
        def forget_requests() -> None:
            for i in range(1, 5):
                assert _forget(url, _person(i)).status_code == 200
                if i == 2:
                    assert httpx.delete(f"{url}/admin/forget/p/person-1", headers=AUTH,
                                        timeout=30).status_code == 200

        adder = threading.Thread(target=forget_requests)
        adder.start()
        while adder.is_alive() and len(removed) < 15:  # removals during every compile
            time.sleep(0.3)
            question = f"Retain question {len(removed)}?"
            response = httpx.post(f"{url}/admin/retain/remove", headers=AUTH, timeout=30,
                                  json={"policy": "p", "question": question})
            assert response.status_code == 200, response.text
            removed.append(question)
        adder.join(timeout=60)
        assert len(removed) >= 3  # each waits for the compile under way
        again = [httpx.post(f"{url}/admin/retain/remove", headers=AUTH, timeout=30,
                            json={"policy": "p", "question": q}).status_code for q in removed]
        assert again == [404] * len(removed)  # none came back into the live pool
        assert app.state.store.removed_retain("p") == removed
        assert _stored(url) == ["person-2", "person-3", "person-4"]
        live = app.state.holder.current.policies["p"]
        assert [t.id for t in live.config.forget] == ["target-person", *_stored(url)]
    with thread_server(create_app(parse_config(data))) as url:  # a restart agrees
        assert [httpx.post(f"{url}/admin/retain/remove", headers=AUTH, timeout=30,
                           json={"policy": "p", "question": q}).status_code
                for q in [*removed, "Retain question 15?"]] == [404] * len(removed) + [200]
