"""``minicon serve``: the daemon under uvicorn."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import stat
import sys

import click

from .common import db_option, fail

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_token(path: str, *, create: bool) -> tuple[str, bool]:
    """The token and whether it existed before (MINICON_TOKEN, else the token file, which is
    created 0600 with a random token on first start)."""
    env = os.environ.get("MINICON_TOKEN")
    if env:
        return env, True
    try:
        with open(path, encoding="ascii") as fh:
            token = fh.read().strip()
        if token:
            return token, True
    except FileNotFoundError:
        pass
    if not create:
        return "", False
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, False


@click.command("serve", context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8717, show_default=True, type=click.IntRange(0, 65535))
@click.option("--uds", metavar="PATH", help="Listen on this Unix socket instead (mode 0600).")
@click.option(
    "--allow-root",
    "allow_roots",
    multiple=True,
    metavar="DIR",
    help="Roots that traces and tarballs may use (repeatable; none by default, / only if given).",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--max-seconds",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="The longest trace a client may ask for.",
)
@click.option("--token-file", metavar="FILE", help="Where the token is kept (created 0600).")
@click.option("--artifacts", metavar="DIR", help="Where generated tarballs are kept.")
@db_option
def serve(**kw: object) -> None:
    """Run the daemon: runs, traces and minimized tarballs over HTTP (FastAPI, uvicorn).

    Every endpoint but /healthz needs `Authorization: Bearer TOKEN`; the token is
    $MINICON_TOKEN, or the token file (created on first start, its path printed). A
    non-loopback address needs a token given beforehand (either of those).
    """
    import uvicorn

    from api.app import create_app
    from api.settings import Settings
    from store.db import Store, data_dir, default_url
    from store.errors import StoreError

    host = str(kw["host"])
    token_file = str(kw["token_file"] or os.path.join(data_dir(), "token"))
    remote = not kw["uds"] and not _loopback(host)
    token, existed = load_token(token_file, create=not remote)
    if remote and not existed:
        raise click.UsageError(
            f"listening on {host} needs a token given beforehand: set MINICON_TOKEN or "
            f"write one to {token_file}"
        )
    roots = []
    for root in kw["allow_roots"]:  # type: ignore[attr-defined]
        real = os.path.realpath(os.fsencode(str(root)))
        if not os.path.isdir(real):
            raise click.UsageError(f"--allow-root {root}: not a directory")
        roots.append(real)
    url = str(kw["db_url"] or default_url())
    try:
        store = Store(url)
    except StoreError as exc:
        fail(str(exc))
    settings = Settings(
        token=token,
        db_url=url,
        allow_roots=roots,
        artifacts_dir=str(kw["artifacts"] or os.path.join(data_dir(), "artifacts")),
        workers=int(kw["workers"]),  # type: ignore[call-overload]
        max_seconds=float(kw["max_seconds"]),  # type: ignore[arg-type]
        python=sys.executable,
    )
    app = create_app(settings, store)
    where = f"unix:{kw['uds']}" if kw["uds"] else f"http://{host}:{kw['port']}"
    source = "$MINICON_TOKEN" if os.environ.get("MINICON_TOKEN") else token_file
    click.echo(f"minicon: serving on {where} (token: {source})", err=True)
    os.umask(0o077)  # the Unix socket and the artifacts are the daemon's own
    if kw["uds"]:
        # bound here, not by uvicorn (which makes its socket 0666): only the owner connects
        path = str(kw["uds"])
        if os.path.exists(path) and stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a stale socket of an earlier daemon
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o600)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        server.run(sockets=[sock])
    else:
        uvicorn.run(app, host=host, port=int(kw["port"]), log_level="warning")  # type: ignore[call-overload]
