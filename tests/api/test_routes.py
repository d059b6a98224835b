"""In-process: auth on every route, the one error shape, confinement, runs and tarballs."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from .conftest import AUTH, make_client, wait_run

OPEN = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def routes(client: TestClient) -> list[tuple[str, str]]:
    """Every operation of the app's own OpenAPI schema, path parameters filled in."""
    out = []
    for path, ops in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if path in OPEN:
            continue
        for method in ops:
            out.append((method.upper(), path.replace("{run_id}", "1").replace("{tarball_id}", "1")))
    return out


def test_every_route_needs_the_token(client: TestClient) -> None:
    found = routes(client)
    assert len(found) >= 11
    for method, path in found:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").status_code == 200  # health needs no token


def test_the_error_shape(client: TestClient) -> None:
    r = client.post("/runs", json={"argv": [], "bogus": 1}, headers=AUTH)
    assert r.status_code == 422
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "invalid"
    assert body["error"]["message"] == "the request is not valid"
    assert {tuple(d["loc"]) for d in body["error"]["details"]} >= {
        ("body", "argv"),
        ("body", "bogus"),
    }
    missing = client.get("/runs/999", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "no run 999"}}
    assert client.get("/tarballs/5", headers=AUTH).status_code == 404


def test_roots_are_confined(client: TestClient, tmp_path: Path) -> None:
    for root in ("/", "/etc", str(tmp_path), str(tmp_path / "allowed/../")):
        r = client.post("/runs", json={"argv": ["true"], "root": root}, headers=AUTH)
        assert r.status_code == 403, root
        assert r.json()["error"]["code"] == "forbidden"
    r = client.post("/tarballs", json={"executables": ["sh"], "root": "/"}, headers=AUTH)
    assert r.status_code == 403
    bad = client.post("/runs", json={"argv": ["true"], "root": "relative"}, headers=AUTH)
    assert bad.status_code == 422
    big = client.post(
        "/runs/import", content=b"x" * 100, headers={**AUTH, "content-length": str(1 << 40)}
    )
    assert big.status_code == 413


@pytest.mark.usefixtures("as_root")
def test_runs_files_tar_tarballs_import(mini_root: Path, tmp_path: Path) -> None:
    (mini_root / "etc/app.conf").write_text("conf\n")
    with make_client(tmp_path, [mini_root]) as c:
        r = c.post(
            "/runs",
            json={
                "argv": ["read l < /etc/app.conf"],
                "shell": True,
                "root": str(mini_root),
                "label": "cfg",
                "seconds": 10,
            },
            headers=AUTH,
        )
        assert r.status_code == 202 and r.headers["location"] == r.json()["url"]
        run_id = r.json()["id"]
        c.headers.update(AUTH)
        run = wait_run(c, run_id)
        assert run["status"] == "completed" and run["exit_code"] == 0, run
        assert run["argv"] == ["/bin/sh", "-c", "read l < /etc/app.conf"]
        listed = c.get("/runs", params={"label": "cfg"}).json()
        assert listed["total"] == 1 and listed["items"][0]["id"] == run_id
        assert c.get("/runs", params={"status": "nope"}).status_code == 422
        procs = c.get(f"/runs/{run_id}/processes").json()
        assert procs[0]["argv"][0] == "/bin/sh"
        files = c.get(f"/runs/{run_id}/files").json()
        assert {
            "what": "file",
            "path": "/etc/app.conf",
            "reason": f"opened by run {run_id} (cfg)",
        } in files
        tar = c.get(f"/runs/{run_id}/tar", params={"include": "/opt"})
        assert tar.status_code == 200 and tar.headers["content-type"] == "application/x-tar"
        with tarfile.open(fileobj=io.BytesIO(tar.content)) as tf:
            names = tf.getnames()
        assert "./etc/app.conf" in names and "./usr/bin/dash" in names and "./opt" in names
        made = c.post("/tarballs", json={"labels": ["cfg"], "root": str(mini_root)})
        assert made.status_code == 201 and not made.json()["cached"]
        again = c.post("/tarballs", json={"labels": ["cfg"], "root": str(mini_root)})
        assert again.status_code == 200 and again.json()["cached"]
        assert again.json()["digest"] == made.json()["digest"]
        down = c.get(made.json()["url"])
        assert down.status_code == 200
        assert down.headers["etag"] == f'"{made.json()["digest"]}"'
        assert (
            c.get(made.json()["url"], headers={"If-None-Match": down.headers["etag"]}).status_code
            == 304
        )
        other = c.post(
            "/tarballs", json={"labels": ["cfg"], "root": str(mini_root), "mode": "loose"}
        )
        assert other.status_code == 201 and other.json()["id"] != made.json()["id"]
        assert (
            c.post("/tarballs", json={"labels": ["nope"], "root": str(mini_root)}).status_code
            == 404
        )
        exported = io.BytesIO()
        from store import transfer
        from store.db import Store

        with Store(c.app.state.minicon.settings.db_url) as s:  # type: ignore[attr-defined]
            transfer.export_run(s, run_id, exported)
        imp = c.post(
            "/runs/import",
            content=exported.getvalue(),
            headers={"content-type": "application/x-ndjson"},
        )
        assert imp.status_code == 201
        assert c.get(imp.json()["url"]).json()["label"] == "cfg"
        assert c.post("/runs/import", content=b"not json\n").status_code == 422
        assert c.delete(f"/runs/{run_id}").status_code == 204
        assert c.get(f"/runs/{run_id}").status_code == 404


@pytest.mark.usefixtures("as_root")
def test_cancel_a_running_trace(mini_root: Path, tmp_path: Path) -> None:
    with make_client(tmp_path, [mini_root]) as c:
        c.headers.update(AUTH)
        r = c.post(
            "/runs",
            json={
                "argv": ["while :; do :; done"],
                "shell": True,
                "root": str(mini_root),
                "seconds": 300,
            },
        )
        run_id = r.json()["id"]
        wait_run(c, run_id, timeout=10, until="running")
        assert c.delete(f"/runs/{run_id}").status_code == 202
        run = wait_run(c, run_id, timeout=20)
        assert run["status"] == "cancelled"
