"""Chaos (issue 18): bursts of forget requests added and withdrawn while the config file is
swapped (written in place, replaced with ``os.replace``, SIGHUP) and the server is SIGKILLed
and restarted on the same state_dir, 5 rounds.

Every acknowledged addition or withdrawal is enforced by the live server within 1 s (in fact
from the next request on, as the admin API promises, and it stays so), and by every server
started after it. Nothing that was not acknowledged is applied: a request that
never reached the server never shows, and one whose answer the kill cut off may go either way,
but the store and the guards agree on it after the restart, and it stays that way. Targets are
made-up names matched by the alias guard, so "enforced" is a deterministic block.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import string
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import (
    bag_of_words_embedder, process_output, process_server, stub_upstream_process, thread_server,
    write_config,
)

pytestmark = pytest.mark.slow

ADMIN = "sk-admin-for-chaos-test"
AUTH = {"authorization": f"Bearer {ADMIN}"}
ROUNDS = 5
WORKERS = 3  # concurrent admin clients: at most this many requests are cut off per kill
OPS_PER_ROUND = 40
KILL_AFTER_OPS = (None, 8, 16, 24, 32)  # None: after the burst, with nothing in flight
ENFORCE_S = 1.0
GIVE_UP_S = 3.0  # how long a late enforcement is still waited for (to report how late)
SWAP_EVERY_S = 0.1
PAUSE_S = 0.15  # the most a worker waits between two requests
SWAP_MODES = ("in place", "os.replace", "SIGHUP")
STATIC = "Static Person"  # the policy's configured target: always blocked


@dataclass
class Target:
    id: str
    name: str
    active: bool | None  # must it be forgotten now? None: a request to change it was cut off
    busy: bool = True  # a request or a poll about it is in flight


@dataclass
class Chaos:
    """The test's model of what the server acknowledged, and what it saw."""

    dir: Path
    stub_url: str
    embed_url: str
    targets: list[Target] = field(default_factory=list)
    refusal: str = "Refused (0)."
    swaps: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    first_check_stale: int = 0  # acknowledged changes not yet seen by the very next request
    refusals_seen: set[str] = field(default_factory=set)  # in blocked answers, this burst
    refusals_per_burst: list[int] = field(default_factory=list)
    reloads: dict[str, float] = field(default_factory=dict)  # by result, at the quiet kill
    problems: list[str] = field(default_factory=list)
    rechecks: int = 0  # later checks that an enforced change is still live
    killed: bool = False
    ops_started: int = 0

    @property
    def path(self) -> Path:
        return self.dir / "c.yaml"

    def config(self) -> dict[str, Any]:
        return {
            "server": {"state_dir": str(self.dir / "state")},
            "models": {"stub": {"backend": "openai", "base_url": f"{self.stub_url}/v1"}},
            "policies": {"p": {
                "forget": [{"id": "static", "name": STATIC}],
                "embedder": {"type": "openai", "base_url": f"{self.embed_url}/v1", "model": "bow"},
                # a question naming a target is far below 0.999 from any name: aliases decide
                "methods": [{"type": "input_detector", "threshold": 0.999}],
                "refusal_text": self.refusal,
            }},
            "routing": {"default_policy": "p"},
        }

    # ------------------------------------------------------------------ requests

    async def send(self, client: httpx.AsyncClient, method: str, url: str,
                   **kwargs: Any) -> httpx.Response | str:
        """The 200 response, or why there is none: "not reached" (no connection: nothing was
        sent), "cut off" (by the kill), "status"."""
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.ConnectError:
            outcome = "not reached"
        except httpx.TransportError as exc:
            outcome = f"cut off ({type(exc).__name__})"
        else:
            if response.status_code == 200:
                return response
            self.problems.append(f"{method} {url} -> {response.status_code}: {response.text[:300]}")
            return "status"
        if not self.killed:
            self.problems.append(f"{method} {url}: {outcome} while the server was up")
        return outcome.split(" (")[0]

    async def blocked(self, client: httpx.AsyncClient, url: str, name: str) -> bool | None:
        """Whether the server blocks a question naming ``name`` (None: no answer)."""
        question = {"role": "user", "content": f"Tell me about {name}."}
        body = {"model": "stub", "messages": [question]}
        response = await self.send(client, "POST", f"{url}/v1/chat/completions", json=body)
        if isinstance(response, str):
            return None
        choice = response.json()["choices"][0]
        is_blocked = choice["finish_reason"] == "content_filter"
        if is_blocked != (response.headers.get("x-unlearn-decision") == "block"):
            self.problems.append(f"{name}: finish {choice['finish_reason']} but headers "
                                 f"{dict(response.headers)}")
        if is_blocked:
            self.refusals_seen.add(choice["message"]["content"])
        return is_blocked

    async def enforced(self, client: httpx.AsyncClient, url: str, target: Target,
                       acked_at: float) -> None:
        """Poll until the live server enforces ``target.active``; record how long it took."""
        first = True
        while (blocked := await self.blocked(client, url, target.name)) is not None:
            waited = time.monotonic() - acked_at
            if blocked == target.active:
                self.latencies_s.append(waited)
                return
            self.first_check_stale += first
            first = False
            if waited > GIVE_UP_S:
                self.latencies_s.append(waited)
                self.problems.append(
                    f"{target.id} not enforced ({target.active}) after {waited:.1f} s")
                return
            await asyncio.sleep(0.02)

    async def still_enforced(self, client: httpx.AsyncClient, url: str, target: Target) -> None:
        target.busy = True
        blocked = await self.blocked(client, url, target.name)
        if blocked is not None and blocked != target.active:
            self.problems.append(f"{target.id}: live {blocked}, acknowledged {target.active}")
        self.rechecks += 1
        target.busy = False

    # ------------------------------------------------------------------ the burst

    async def change(self, client: httpx.AsyncClient, url: str, target: Target, *,
                     add: bool) -> None:
        """POST ``target`` (``add``) or DELETE it, and on an acknowledgement wait until the live
        server enforces the change."""
        if add:
            self.targets.append(target)
            method, where = "POST", f"{url}/admin/forget"
            body: dict[str, Any] | None = {"policy": "p",
                                           "target": {"id": target.id, "name": target.name}}
        else:
            target.busy = True
            method, where, body = "DELETE", f"{url}/admin/forget/p/{target.id}", None
        response = await self.send(client, method, where, json=body, headers=AUTH)
        self.outcomes[f"{method} {response if isinstance(response, str) else 'acknowledged'}"] += 1
        if isinstance(response, httpx.Response):
            target.active = add
            await self.enforced(client, url, target, time.monotonic())
        elif response == "cut off":
            target.active = None
        target.busy = False

    async def worker(self, client: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes],
                     rng: random.Random, round_: int, kill_after: int | None) -> None:
        while not self.killed and self.ops_started < OPS_PER_ROUND:
            self.ops_started += 1
            if self.ops_started == kill_after:  # kill while this request is in flight
                asyncio.get_running_loop().call_later(rng.uniform(0.002, 0.015), self.kill, process)
            withdrawable = [t for t in self.targets if t.active is True and not t.busy]
            if withdrawable and rng.random() < 0.35:
                await self.change(client, url, rng.choice(withdrawable), add=False)
            else:
                await self.change(client, url, self.new_target(rng, round_), add=True)
            await asyncio.sleep(rng.uniform(0, PAUSE_S))  # gaps in which reloads land alone

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        if not self.killed:
            process.kill()
            self.killed = True

    def new_target(self, rng: random.Random, round_: int) -> Target:
        taken = {t.name for t in self.targets}
        while (name := " ".join("".join(rng.choices(string.ascii_lowercase, k=8)).title()
                                for _ in range(2))) in taken:
            pass
        return Target(f"r{round_}-{len(self.targets)}", name, active=False)

    async def recheck(self, client: httpx.AsyncClient, url: str, rng: random.Random,
                      done: asyncio.Event) -> None:
        """Keep checking that earlier changes are still live (a reload that swapped in a
        runtime built before a forget request was stored would undo it until the next one)."""
        while not (self.killed or done.is_set()):
            settled = [t for t in self.targets if t.active is not None and not t.busy]
            if settled:
                await self.still_enforced(client, url, rng.choice(settled))
            await asyncio.sleep(0.005)

    async def swap_configs(self, process: subprocess.Popen[bytes], round_: int,
                           done: asyncio.Event) -> None:
        """Change the refusal text (harmless to forget state) every SWAP_EVERY_S, each time
        another way, until the burst is done or the server killed."""
        for k in range(round_, 10**6):
            if self.killed or done.is_set():
                return
            mode = SWAP_MODES[k % len(SWAP_MODES)]
            self.refusal = f"Refused ({sum(self.swaps.values()) + 1}, {mode})."
            if mode == "os.replace":
                os.replace(write_config(self.dir / ".c.yaml.tmp", self.config()), self.path)
            else:
                write_config(self.path, self.config())
                if mode == "SIGHUP":
                    process.send_signal(signal.SIGHUP)
            self.swaps[mode] += 1
            await asyncio.sleep(SWAP_EVERY_S)

    async def burst(self, url: str, process: subprocess.Popen[bytes], round_: int) -> None:
        self.killed, self.ops_started = False, 0
        self.refusals_seen = set()
        kill_after = KILL_AFTER_OPS[round_]
        rng = random.Random(f"chaos-{round_}")
        done = asyncio.Event()
        async with httpx.AsyncClient(timeout=30) as client:
            swapper = asyncio.create_task(self.swap_configs(process, round_, done))
            checker = asyncio.create_task(self.recheck(client, url, random.Random(round_), done))
            await asyncio.gather(*(self.worker(client, url, process, rng, round_, kill_after)
                                   for _ in range(WORKERS)))
            done.set()
            await asyncio.gather(swapper, checker)
            if not self.killed:  # a quiet kill: first the swaps and the store must show live
                await self.settled(client, url)
                self.kill(process)
        self.refusals_per_burst.append(len(self.refusals_seen))
        assert process.wait(timeout=30) == -signal.SIGKILL

    async def settled(self, client: httpx.AsyncClient, url: str) -> None:
        deadline = time.monotonic() + 10
        while (await self.refusal_of_static(client, url)) != self.refusal:
            if time.monotonic() > deadline:
                self.problems.append(f"the last config swap ({self.refusal!r}) is not live")
                break
            await asyncio.sleep(0.1)
        metrics = (await client.get(f"{url}/metrics")).text
        self.reloads = {result: float(n) for result, n in re.findall(
            r'unlearn_config_reloads_total\{result="(\w+)"\} (\S+)', metrics)}
        listed = await self.listed(client, url)
        expected = {t.id for t in self.targets if t.active}
        if listed != expected:
            self.problems.append(
                f"live store: extra {listed - expected}, missing {expected - listed}")
        for target in self.targets:
            await self.still_enforced(client, url, target)

    # ------------------------------------------------------------------ after a restart

    async def listed(self, client: httpx.AsyncClient, url: str) -> set[str]:
        rows = (await client.get(f"{url}/admin/forget", headers=AUTH)).json()["data"]
        return {r["target_id"] for r in rows}

    async def refusal_of_static(self, client: httpx.AsyncClient, url: str) -> str:
        body = {"model": "stub", "messages": [{"role": "user", "content": f"Who is {STATIC}?"}]}
        answer = (await client.post(f"{url}/v1/chat/completions", json=body)).json()
        return str(answer["choices"][0]["message"]["content"])

    async def check_restart(self, url: str) -> None:
        """The restarted server: every target as acknowledged, in the store and the guards;
        cut-off requests either way but the same in both (and from now on as found)."""
        self.killed = False
        async with httpx.AsyncClient(timeout=30) as client:
            listed = await self.listed(client, url)
            if phantom := listed - {t.id for t in self.targets}:
                self.problems.append(f"never sent but stored: {sorted(phantom)}")
            limit = asyncio.Semaphore(4)

            async def check(name: str) -> bool | None:
                async with limit:
                    return await self.blocked(client, url, name)

            found = await asyncio.gather(*(check(t.name) for t in self.targets))
            for target, is_blocked in zip(self.targets, found, strict=True):
                stored = target.id in listed
                if is_blocked != stored:
                    self.problems.append(f"{target.id}: stored {stored} but blocked {is_blocked}")
                if target.active is None:
                    self.outcomes[f"cut off, found {'applied' if stored else 'not applied'}"] += 1
                    target.active = stored
                elif target.active != stored:
                    self.problems.append(f"{target.id}: acknowledged active={target.active}, "
                                         f"after the restart stored={stored}")
            if (refusal := await self.refusal_of_static(client, url)) != self.refusal:
                self.problems.append(f"restart serves {refusal!r}, the file says {self.refusal!r}")

    @property
    def cut_off(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k.startswith("cut off, found"))

    def summary(self, wall_s: float) -> str:
        worst = max(self.latencies_s, default=0.0)
        return (f"chaos: {ROUNDS} rounds in {wall_s:.1f} s; {dict(self.outcomes)}; "
                f"{len(self.latencies_s)} enforcements measured, max {worst * 1000:.0f} ms, "
                f"{self.first_check_stale} not seen by the next request, {self.rechecks} "
                f"rechecks later; swaps {dict(self.swaps)}, reloads in the quiet round "
                f"{self.reloads}, refusal texts seen live per burst {self.refusals_per_burst}")


async def test_acknowledged_forget_requests_survive_bursts_swaps_and_kills(tmp_path: Path) -> None:
    started = time.monotonic()
    env = {"UNLEARN_ADMIN_KEY": ADMIN}
    log = ""
    with (stub_upstream_process("--tokens", "4") as stub,
          thread_server(bag_of_words_embedder()) as embedder):
        chaos = Chaos(tmp_path, stub, embedder)
        write_config(chaos.path, chaos.config())
        for round_ in range(ROUNDS + 1):  # the last start only checks
            with process_server(chaos.path, env=env) as (url, process):
                await chaos.check_restart(url)
                if round_ < ROUNDS:
                    await chaos.burst(url, process, round_)
                log = process_output(process)
    summary = chaos.summary(time.monotonic() - started)
    print(summary)
    assert chaos.problems == [], f"{summary}\n" + "\n".join(chaos.problems) + f"\n{log[-3000:]}"
    assert chaos.outcomes["POST acknowledged"] >= 40 and chaos.outcomes["DELETE acknowledged"] >= 10
    assert max(chaos.latencies_s) <= ENFORCE_S
    assert chaos.first_check_stale == 0  # the admin API: "effective for the next request"
    assert chaos.cut_off <= WORKERS * (ROUNDS - 1)  # only requests in flight at a kill
    assert sum(n > 1 for n in chaos.refusals_per_burst) >= 3  # swaps applied mid-burst
