"""The dashboard's FastAPI app: pages, their live fragments, static files, login.

A background thread keeps the index in step with the chain (every ``poll_s``); each page polls
its fragment (htmx ``every`` trigger), so a block that brings events shows up without a reload.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import requests
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from prover.dashboard import views
from prover.dashboard.auth import COOKIE, Sessions, TokenFile, bearer
from prover.exceptions import DashboardError
from prover.index.contracts import Watched, model_names
from prover.index.indexer import Indexer, connect
from prover.index.ledger import Ledger
from prover.index.store import Store, open_store
from prover.paths import ROOT

HERE = Path(__file__).resolve().parent
HTMX = ROOT / "node_modules" / "htmx.org" / "dist" / "htmx.min.js"
VIEWS = ("insurer", "dao", "registry", "relay")
#: What a relay view without a usable token says to do.
RELAY_TOKEN_HINT = (
    "give --relay-token-file with a relay client token holding read (and admin for every "
    "client's jobs and the relay's health): python -m prover.relay clients create NAME "
    "--scope read,admin --token-file FILE"
)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


@dataclass
class DashboardConfig:
    """Where the dashboard reads from and who may see it."""

    rpc_url: str
    deployment: Path
    db: str
    relay_url: str | None = None
    relay_token: str | None = None
    tokens: TokenFile | None = None
    poll_s: float = 1.0
    confirmations: int = 0


class Dashboard:
    """The index, its follower thread and the relay client behind the pages."""

    def __init__(self, config: DashboardConfig) -> None:
        if not HTMX.is_file():
            raise DashboardError(f"htmx is missing ({HTMX}); run ./zk setup")
        self.config = config
        self.watched = Watched.from_manifest(config.deployment)
        self.w3 = connect(config.rpc_url)
        self.store: Store = open_store(config.db)
        self.indexer = Indexer(
            self.w3, self.watched, self.store, confirmations=config.confirmations
        )
        self.names = model_names(config.deployment)
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cache: tuple[tuple[int, str] | None, Ledger] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Index once, then follow the chain in a thread."""
        self.indexer.sync()
        self._thread = threading.Thread(target=self._follow, name="dashboard-index", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(self.config.poll_s):
            try:
                self.indexer.sync()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - shown on the pages, retried next poll
                lines = str(exc).splitlines() or [""]
                self.last_error = f"{type(exc).__name__}: {lines[0]}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.store.close()

    def ledger(self) -> Ledger:
        """The ledger at the current cursor (rebuilt only when the cursor moved)."""
        cursor = self.store.cursor()
        key = (cursor.number, cursor.hash) if cursor else None
        with self._lock:
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, Ledger.of(self.store))
            return self._cache[1]

    def relay_jobs(self) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None, str | None]:
        """The relay's jobs and health, or the error that stopped us reading them.

        The relay wants a client token (:mod:`prover.relay.auth`): ``read`` lists that client's
        jobs, ``admin`` every client's and ``GET /healthz``. Without ``admin`` the health line
        is ``GET /livez`` (alive or not) and says that details need ``admin``.
        """
        url = self.config.relay_url
        if not url:
            return None, None, None
        if not self.config.relay_token:
            return None, None, f"relay {url}: no token; {RELAY_TOKEN_HINT}"
        headers = {"Authorization": f"Bearer {self.config.relay_token}"}
        jobs: list[dict[str, Any]] = []
        try:
            offset = 0
            while True:
                r = requests.get(
                    f"{url}/v1/jobs",
                    params={"limit": 1000, "offset": offset},
                    headers=headers,
                    timeout=5,
                )
                if r.status_code in (401, 403):
                    return None, None, f"relay {url}: {_refusal(r)}; {RELAY_TOKEN_HINT}"
                r.raise_for_status()
                page = r.json()["jobs"]
                jobs.extend(page)
                if len(page) < 1000:
                    break
                offset += len(page)
            h = requests.get(f"{url}/healthz", headers=headers, timeout=5)
            if h.status_code == 403:  # a read-only token: liveness only
                alive = requests.get(f"{url}/livez", timeout=5).ok
                health: dict[str, Any] | None = {
                    "status": "alive" if alive else "not answering",
                    "needs_admin": True,
                }
            else:
                health = h.json() if h.ok else None
        except (requests.RequestException, ValueError, KeyError) as exc:
            return None, None, f"relay {url}: {type(exc).__name__}: {str(exc)[:160]}"
        return jobs, health, None

    def context(self, view: str) -> dict[str, Any]:
        """What the ``view`` templates render."""
        led = self.ledger()
        cursor = self.store.cursor()
        base: dict[str, Any] = {
            "view": view,
            "block": cursor.number if cursor else None,
            "chain_id": self.watched.chain_id,
            "events": led.events,
            "error": self.last_error,
            "relay_configured": bool(self.config.relay_url),
            "addresses": self.watched.addresses,
        }
        if view == "insurer":
            jobs, _, _ = self.relay_jobs()
            base["data"] = views.insurer(led, self.names, jobs)
        elif view == "dao":
            base["data"] = views.dao(led, self.names)
        elif view == "registry":
            base["data"] = views.registry(led, self.names)
        else:
            jobs, health, error = self.relay_jobs()
            base["data"] = views.relay(jobs, health, error)
        return base


def create_app(config: DashboardConfig, dashboard: Dashboard | None = None) -> FastAPI:
    """The app; it starts and stops the dashboard's index follower with its lifespan."""
    dash = dashboard or Dashboard(config)
    sessions = Sessions()
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        dash.start()
        try:
            yield
        finally:
            dash.stop()

    app = FastAPI(
        title="zkcare dashboard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )

    def page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=status)

    def who(request: Request) -> str | None:
        if config.tokens is None:
            return "loopback"
        return config.tokens.who(bearer(request.headers.get("authorization"))) or sessions.who(
            request.cookies.get(COOKIE)
        )

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path != "/login" and who(request) is None:
            response: Response = page("login.html", 401, next=path, wrong=False)
            response.headers["WWW-Authenticate"] = 'Bearer realm="zkcare dashboard"'
        else:
            response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_form() -> HTMLResponse:
        return page("login.html", next="/insurer", wrong=False)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0]
        target = (form.get("next") or ["/insurer"])[0]
        if not target.startswith("/") or target.startswith("//"):
            target = "/insurer"
        name = config.tokens.who(token) if config.tokens else "loopback"
        if name is None:
            return page("login.html", 401, next=target, wrong=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.open(name),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout")
    def logout(request: Request) -> Response:
        sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/")
    def root() -> Response:
        return RedirectResponse("/insurer", status_code=303)

    @app.get("/static/htmx.min.js")
    def htmx() -> FileResponse:
        return FileResponse(HTMX, media_type="text/javascript")

    @app.get("/static/style.css")
    def style() -> FileResponse:
        return FileResponse(HERE / "static" / "style.css", media_type="text/css")

    @app.get("/api/status")
    def status() -> JSONResponse:
        cursor = dash.store.cursor()
        return JSONResponse(
            {
                "block": cursor.number if cursor else None,
                "events": dash.ledger().events,
                "error": dash.last_error,
            }
        )

    def known(view: str) -> None:
        if view not in VIEWS:
            from fastapi import HTTPException

            raise HTTPException(404, f"no view {view!r}; views: {', '.join(VIEWS)}")

    @app.get("/fragments/{view}", response_class=HTMLResponse)
    def fragment(view: str) -> HTMLResponse:
        known(view)
        return page(f"_{view}.html", **dash.context(view))

    @app.get("/{view}", response_class=HTMLResponse)
    def full(view: str) -> HTMLResponse:
        known(view)
        return page("page.html", fragment=f"_{view}.html", **dash.context(view))

    return app


def _refusal(response: requests.Response) -> str:
    """``HTTP 403: <the relay's detail>`` in one line."""
    try:
        detail = str(response.json().get("detail", ""))
    except ValueError:
        detail = response.text
    return f"HTTP {response.status_code}: {detail[:160]}"
