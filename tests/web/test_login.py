"""With a token set, a shifter's browser signs in once and the gallery works: its images
(which a browser fetches without any Authorization header) and its polls load."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from support.devtools import browser
from support.service import MonitorProcess
from support.waiting import wait_for

from exporter.simulate import simulate_file

TOKEN = "shift-crew-token"
PLOTS = ["AdcSpectrum", "PacketRate"]


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("login")
    data, plots = root / "data", root / "plots"
    data.mkdir()
    simulate_file(data / "run.h5", "packet", n_packets=20_000, seed=5)
    process = MonitorProcess(data, plots, "--plots", *PLOTS, "--auth-token", TOKEN)
    process.headers = {"Authorization": f"Bearer {TOKEN}"}
    with process:
        wait_for(lambda: len(process.get("/api/plots").json()) == len(PLOTS), 30, "the plots")
        yield process


def test_a_browser_signs_in_and_sees_every_plot(monitor: MonitorProcess, tmp_path: Path) -> None:
    listing = monitor.get("/api/plots").json()
    with browser(tmp_path / "profile") as page:
        page.open(monitor.base + "/")
        wait_for(lambda: page.evaluate("location.pathname") == "/login"
                 and page.evaluate("document.readyState") == "complete", 20,
                 "the sign-in form")

        page.evaluate("document.getElementById('token').value = 'not the token';"
                         "document.forms[0].submit()")
        # while the refusal loads, the page may have no body yet
        wait_for(lambda: "Wrong token" in page.evaluate("document.body?.innerText ?? ''"),
                 20, "the refusal")

        page.evaluate(f"document.getElementById('token').value = '{TOKEN}';"
                         "document.forms[0].submit()")
        wait_for(lambda: page.evaluate("location.pathname") == "/", 20, "the gallery")
        loaded = wait_for(lambda: (marks := page.evaluate(
            "[...document.querySelectorAll('img.plot')].map(i => i.dataset.loaded || '')"))
            and all(mark == "1" for mark in marks) and marks, 30, "every image decoded")
        shown = page.evaluate("[...document.querySelectorAll('img.plot')]"
                                 ".map(i => new URL(i.src).pathname)")
        polled = page.evaluate("fetch('/api/plots').then(r => r.json())")
        cookie_seen_by_scripts = page.evaluate("document.cookie")

    assert len(loaded) == len(listing)
    assert sorted(shown) == sorted(entry["url"] for entry in listing)
    assert sorted(entry["url"] for entry in polled) == sorted(e["url"] for e in listing)
    assert cookie_seen_by_scripts == ""  # HttpOnly: no script on the page can read it


def test_the_login_cookie_opens_every_route_and_a_wrong_one_none(
        monitor: MonitorProcess) -> None:
    image = monitor.get("/api/plots").json()[0]["url"]
    with httpx.Client(base_url=monitor.base) as client:
        refused = client.post("/login", data={"token": "wrong", "next": "/"})
        assert refused.status_code == 401 and not refused.cookies
        signed_in = client.post("/login", data={"token": TOKEN, "next": image})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == image
        set_cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        assert TOKEN.lower() not in set_cookie  # the cookie is not the token
        for path in ("/", "/metrics", "/api/plots", image, "/api/channels?file=run"):
            assert client.get(path).status_code == 200, path
        assert client.get(image).content.startswith(b"\x89PNG")
        client.get("/logout")
        assert client.get(image).status_code == 401

    forged = {"larpix_monitor_session": "0" * 64}
    assert httpx.get(monitor.base + image, cookies=forged).status_code == 401


def test_a_browser_without_a_session_is_sent_to_sign_in(monitor: MonitorProcess) -> None:
    page = httpx.get(monitor.base + "/api/channels?file=run",
                     headers={"Accept": "text/html,*/*"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fapi%2Fchannels%3Ffile%3Drun"
    elsewhere = httpx.post(monitor.base + "/login",
                           data={"token": TOKEN, "next": "//evil.example/"})
    assert elsewhere.headers["location"] == "/"  # never sent off the service
    assert httpx.get(monitor.base + "/login").status_code == 200
