"""Security of the running service: no request path reaches the filesystem, the token
guards every route but the probes (/healthz, /readyz), the default bind is loopback,
page content is escaped, and the data directory is only ever read."""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import pytest
from support.service import MONITOR, MonitorProcess
from support.waiting import wait_for

from exporter.simulate import simulate_file

SECRET = "TOPSECRET-do-not-serve"
XSS_STEM = "<img src=x onerror=alert(1)>"
TOKEN = "s3cret-token"


def raw_request(port: int, target: bytes, headers: bytes = b"") -> tuple[int, bytes]:
    """Sends the request target byte for byte: no client-side normalisation of '..'."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers
                     + b"Connection: close\r\n\r\n")
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1]), response


def data_dir_fingerprint(data: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in data.iterdir()}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MonitorProcess, Path]]:
    root = tmp_path_factory.mktemp("security")
    data, plots = root / "data", root / "plots"
    data.mkdir()
    (root / "secret.txt").write_text(SECRET)
    simulate_file(data / "run.h5", "packet", n_packets=5_000, seed=1)
    simulate_file(data / f"{XSS_STEM}.h5", "packet", n_packets=2_000, seed=2)
    before = data_dir_fingerprint(data)
    with MonitorProcess(data, plots, "--plots", "AdcSpectrum") as monitor:
        wait_for(lambda: len(monitor.get("/api/plots").json()) == 2, 20, "both plots")
        yield monitor, root
    assert data_dir_fingerprint(data) == before  # only ever read


TRAVERSALS = [
    b"/plots/../secret.txt",
    b"/plots/run/../../secret.txt",
    b"/plots/run/../../../../../../etc/passwd",
    b"/plots/%2e%2e/%2e%2e/secret.txt",
    b"/plots/..%2f..%2fsecret/x.png",
    b"/plots/run/..%2f..%2f..%2fsecret.txt%00.png",
    b"/plots/run/%2e%2e%2f%2e%2e%2fsecret.png",
    b"/plots/run/..%5c..%5csecret.png",
    b"/plots/run_dqm/run_AdcSpectrum.png",
    b"/run_dqm/run_AdcSpectrum.png",
    b"/plots/%2fetc%2fpasswd/x.png",
    b"/plots/run/%2fetc%2fpasswd.png",
    b"//etc/passwd",
    b"/plots//etc/passwd.png",
    b"/etc/passwd",
    b"http://127.0.0.1/etc/passwd",
    b"/plots/run/AdcSpectrum.png%00",
    b"/plots/run%00/AdcSpectrum.png",
    b"/plots/run/AdcSpectrum%00.png",
    b"/plots/run/AdcSpectrum.PNG",
    b"/.larpix-monitor-state.json",
    b"/plots/.larpix-monitor-state.json",
    b"/plots/run/.larpix-monitor-state.json.png",
]


def test_only_images_the_monitor_made_are_served(served) -> None:
    monitor, root = served
    status, response = raw_request(monitor.port, b"/plots/run/AdcSpectrum.png")
    assert status == 200 and response.endswith(
        (root / "plots" / "run_dqm" / "run_AdcSpectrum.png").read_bytes())
    secret_path = quote(str(root / "secret.txt"), safe="").encode()
    for target in [*TRAVERSALS, b"/plots/" + secret_path + b"/x.png",
                   b"/plots/run/" + secret_path + b".png"]:
        status, response = raw_request(monitor.port, target)
        assert status == 404, target
        assert SECRET.encode() not in response and b"root:" not in response, target
        assert b"\x89PNG" not in response, target


def test_a_raw_nul_byte_is_refused_before_routing(served) -> None:
    monitor, _ = served
    status, response = raw_request(monitor.port, b"/plots/run/AdcSpectrum.png\x00/../x")
    assert status == 400 and b"\x89PNG" not in response


def test_file_names_are_escaped_in_the_gallery_and_still_served(served) -> None:
    monitor, _ = served
    page = monitor.get("/")
    assert page.status_code == 200
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert XSS_STEM not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    listing = {entry["file"]: entry["url"] for entry in monitor.get("/api/plots").json()}
    url = listing[XSS_STEM]
    assert url == f"/plots/{quote(XSS_STEM, safe='')}/AdcSpectrum.png"
    image = httpx.get(monitor.base + url)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_default_bind_is_loopback_only(served) -> None:
    monitor, _ = served
    assert "--host" not in monitor.args
    listening = [c.laddr for c in psutil.Process(monitor.proc.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", monitor.port)]


@pytest.mark.parametrize("from_file", [False, True], ids=["flag", "file"])
def test_token_is_required_on_every_route_but_the_probes(tmp_path: Path, from_file) -> None:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    simulate_file(data / "run.h5", "packet", n_packets=3_000, seed=3)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token = ["--auth-token-file", str(token_file)] if from_file else ["--auth-token", TOKEN]
    monitor = MonitorProcess(data, plots, "--plots", "AdcSpectrum", *token)
    monitor.headers = {"Authorization": f"Bearer {TOKEN}"}
    with monitor:
        wait_for(lambda: monitor.get("/api/plots").json(), 20, "the plot")
        routes = ["/", "/metrics", "/api/plots", "/plots/run/AdcSpectrum.png",
                  "/docs", "/openapi.json", "/no/such/route"]
        for path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                            {"Authorization": f"Basic {TOKEN}"}):
                denied = httpx.get(monitor.base + path, headers=headers)
                assert denied.status_code == 401, (path, headers)
                assert denied.headers["www-authenticate"].startswith("Bearer")
                assert b"\x89PNG" not in denied.content
            head = httpx.head(monitor.base + path)
            assert head.status_code == 401, path
            allowed = monitor.get(path)
            assert allowed.status_code == (404 if path == "/no/such/route" else 200), path
        assert httpx.get(monitor.base + "/metrics", headers={
            "Authorization": f"bearer {TOKEN}"}).status_code == 200
        assert httpx.get(monitor.base + "/healthz").status_code == 200
        assert httpx.get(monitor.base + "/readyz").status_code == 200


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_an_unusable_token_file_is_one_line_and_exit_2(tmp_path: Path, content) -> None:
    data = tmp_path / "data"
    data.mkdir()
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    result = subprocess.run([MONITOR, "serve", "-i", str(data), "-o", str(tmp_path / "plots"),
                             "--auth-token-file", str(token_file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(token_file) in lines[0], result.stderr
