"""A generated corpus of harmless texts that look like obfuscation: what guards must let through.

The decoders and folds of :mod:`filters.canonical` see text that *resembles* an attack every
day: hashes and keys look like base64 or hex, version strings and usernames like leetspeak,
code like separators inside words, CJK and Thai prose has no spaces, math is all symbols.
:func:`benign_texts` draws ``n`` such texts, seeded, from generators of each kind; none of
them is about anyone (the words come from small neutral vocabularies, never a probe).
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from collections.abc import Callable

__all__ = ["KINDS", "benign_texts"]

_NOUNS = ("meeting", "report", "garden", "kettle", "budget", "bicycle", "window", "invoice",
          "recipe", "server", "library", "concert", "ticket", "harbour", "printer", "museum")
_VERBS = ("moved", "opened", "finished", "cleaned", "updated", "painted", "cancelled",
          "booked", "checked", "repaired")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_IDENTS = ("count", "total", "items", "buffer", "index", "result", "config", "user_id",
           "payload", "offset", "retries", "timeout_s")
_ZH = ("今天的天气很好", "我们在公园里散步", "这家餐厅的面条很好吃", "会议改到下午三点",
       "请把文件发给我", "图书馆周末开放", "他正在学习做饭", "火车晚点了十分钟")
_JA = ("今日は雨が降っています", "駅の近くに新しいカフェができました", "会議は午後三時からです",
       "この本はとても面白い")
_TH = ("วันนี้อากาศดีมาก", "เราไปเดินเล่นที่สวนสาธารณะ", "ร้านนี้ก๋วยเตี๋ยวอร่อย",
       "ประชุมเลื่อนเป็นบ่ายสามโมง")


def _sentence(rng: random.Random) -> str:
    return (f"The {rng.choice(_NOUNS)} was {rng.choice(_VERBS)} on {rng.choice(_DAYS)} "
            f"at {rng.randint(1, 12)} o'clock.")


def _code(rng: random.Random) -> str:
    a, b = rng.sample(_IDENTS, 2)
    forms = (f"for (int i = 0; i < {a}; i++) {{ {b} += data[i] * {rng.randint(2, 9)}; }}",
             f"def get_{a}(self, {b}=None):\n    return self._{a}.get({b}, {rng.randint(0, 99)})",
             f"SELECT {a}, COUNT(*) FROM {b}s WHERE id > {rng.randint(1, 999)} GROUP BY {a};",
             f"const {a} = await fetch(`/api/v{rng.randint(1, 3)}/{b}`).then(r => r.json());",
             f"if [ -f ./{a}.conf ]; then export {b.upper()}=$(cat ./{a}.conf); fi")
    return rng.choice(forms)


def _digest(rng: random.Random) -> str:
    data = rng.randbytes(32)
    algo = rng.choice(("md5", "sha1", "sha256"))
    return f"{algo}: {hashlib.new(algo, data).hexdigest()} ({rng.choice(_NOUNS)}.tar.gz)"


def _uuid(rng: random.Random) -> str:
    return f"request {uuid.UUID(int=rng.getrandbits(128), version=4)} failed, retrying"


def _base64_blob(rng: random.Random) -> str:
    blob = base64.b64encode(_sentence(rng).encode()).decode()
    return rng.choice((f"data: {blob}", f"Authorization: Basic {blob}", blob))


def _random_token(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    token = "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 40)))
    return f"Use the key sk_test_{token} in staging only."


def _version(rng: random.Random) -> str:
    v = f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}"
    tail = rng.choice(("", "-rc1", "-beta.2", "+build.7", ".post1"))
    return f"Upgrade from v{v}{tail} to {rng.randint(1, 12)}.0.0 before {rng.choice(_DAYS)}."


def _leet_username(rng: random.Random) -> str:
    leet = str.maketrans("aeiost", "431057")
    name = rng.choice(_NOUNS).translate(leet) + rng.choice(("", "_", "x")) + str(rng.randint(1, 99))
    return f"@{name} joined the {rng.choice(_NOUNS)} channel"


def _cjk(rng: random.Random) -> str:
    return "，".join(rng.sample(_ZH, 3)) + "。" if rng.random() < 0.6 else "、".join(rng.sample(_JA, 2)) + "。"


def _thai(rng: random.Random) -> str:
    return " ".join(rng.sample(_TH, 2))


def _math(rng: random.Random) -> str:
    a, b, c = (rng.randint(1, 9) for _ in range(3))
    forms = (f"x^2 + {a}x - {b} = 0 => x = (-{a} ± sqrt({a}^2 + 4*{b})) / 2",
             f"∫_0^{a} {b}t^2 dt = {b * a ** 3 / 3:.3f}", f"{a}/{b} + {c}/{a} = {(a * a + b * c)}/{a * b}",
             f"f'(x) = {a}·cos({b}x) − {c}·x⁻²", f"|{a} - {b}| ≤ {a + b}, ∀ a,b ∈ ℝ")
    return rng.choice(forms)


def _url(rng: random.Random) -> str:
    query = rng.choice(_NOUNS) + "%20" + rng.choice(_NOUNS)
    return f"https://example.org/search?q={query}&page={rng.randint(1, 9)}&lang=en%2DGB"


def _html(rng: random.Random) -> str:
    return f"<p>Caf&eacute; &amp; {rng.choice(_NOUNS)} &ndash; open {rng.choice(_DAYS)} &copy; 2024</p>"


def _hex_dump(rng: random.Random) -> str:
    return " ".join(f"{b:02x}" for b in rng.randbytes(16)) + "  |................|"


KINDS: dict[str, Callable[[random.Random], str]] = {
    "code": _code, "hash": _digest, "uuid": _uuid, "base64 of harmless text": _base64_blob,
    "random key": _random_token, "version string": _version, "leet username": _leet_username,
    "cjk prose": _cjk, "thai prose": _thai, "math": _math, "url": _url, "html": _html,
    "hex dump": _hex_dump,
}
"""Every kind of look-alike, by name."""


def benign_texts(n: int = 325, *, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (kind, text) pairs, the kinds in turn, each text drawn from its own seeded rng."""
    kinds = list(KINDS)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        rng = random.Random(f"{seed}:{kind}:{i}")
        out.append((kind, KINDS[kind](rng)))
    return out
