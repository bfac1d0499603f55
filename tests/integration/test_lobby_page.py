"""The lobby page in a real browser: Debian's headless Chromium driven by Playwright, against real PAM.

PAM runs as ``uvicorn`` in a subprocess (the API app with the page's routes) against the local stack:
the catalog in moto's S3, the similar-games table in moto's DynamoDB, campaigns in the Personalize
emulator, a platform database (see :mod:`tests.integration.lobby_stack`). What the page shows is compared
with what the API answers the test itself.

Refreshing the committed screenshot (``docs/lobby.png``)::

    LOBBY_SCREENSHOT=docs/lobby.png .venv/bin/pytest -q tests/integration/test_lobby_page.py -k screenshot

Chromium comes from Debian (``bash .ci/install-chromium.sh``); Playwright's own browser download is never
used.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.integration.lobby_stack import LobbyStack, running_lobby_stack
from tests.integration.support import REPO_ROOT, wait_for

CHROMIUM = Path("/usr/bin/chromium")
#: The flags this machine's closed network needs (no background connections, no QUIC, no sync).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
#: The page polls this often in tests (``?refresh=SECONDS``).
REFRESH_SECONDS = 0.5
DEADLINE_SECONDS = 30.0
SCREENSHOT_ENV = "LOBBY_SCREENSHOT"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lobby_stack(
    devstack_env: dict[str, str], aws_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LobbyStack]:
    with running_lobby_stack(devstack_env, aws_client, tmp_path_factory.mktemp("lobby-stack")) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install it with `bash .ci/install-chromium.sh`", pytrace=False)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,  # type: ignore[arg-type]
            device_scale_factor=1,
        )
        try:
            yield context
        finally:
            context.close()


class PageLog:
    """What the page reported: console errors (CSP violations among them) and uncaught exceptions."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def exception(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")

    def unexpected(self, *allowed: str) -> list[str]:
        """Errors other than failed loads with the ``allowed`` HTTP statuses (the API's own answers)."""
        pattern = re.compile(r"status of (\d{3})")
        found = []
        for text in self.errors:
            status = pattern.search(text)
            if status is None or status.group(1) not in allowed:
                found.append(text)
        return found


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[tuple[Page, PageLog]]:
    opened = browser.new_page()
    log = PageLog()
    opened.on("console", log.console)
    opened.on("pageerror", log.exception)
    try:
        yield opened, log
    finally:
        opened.close()


def lobby_url(stack: LobbyStack, player_id: str, token: str, *, refresh: float = REFRESH_SECONDS) -> str:
    return f"{stack.base_url}/lobby?refresh={refresh:g}#player={player_id}&token={token}"


def shown_sections(page: Page) -> list[dict[str, Any]]:
    """The sections the page shows: key, title, degraded marker, game ids and names, in page order."""
    result: list[dict[str, Any]] = page.eval_on_selector_all(
        "[data-testid=lobby-section]",
        """sections => sections.map(section => ({
            key: section.dataset.sectionKey,
            title: section.querySelector('[data-testid=section-title]').textContent,
            degraded: section.querySelector('[data-testid=degraded-marker]') !== null,
            gameIds: [...section.querySelectorAll('[data-testid=game-tile]')].map(tile => tile.dataset.gameId),
            names: [...section.querySelectorAll('[data-testid=game-name]')].map(name => name.textContent),
            providers: [...section.querySelectorAll('[data-testid=game-provider]')].map(p => p.textContent),
        }))""",
    )
    return result


def expected_sections(lobby: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "key": section["key"],
            "title": section["title"],
            "degraded": bool(section["degraded"]),
            "gameIds": [game["gameId"] for game in section["games"]],
            "names": [game["name"] for game in section["games"]],
            "providers": [game["provider"] for game in section["games"]],
        }
        for section in lobby["sections"]
    ]


def wait_for_sections(page: Page, expected: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    """Poll the DOM until it shows ``expected``; on timeout, say what it showed instead."""
    last: list[list[dict[str, Any]]] = [[]]

    def shows_expected() -> bool:
        last[0] = shown_sections(page)
        return last[0] == expected

    try:
        wait_for(shows_expected, timeout=DEADLINE_SECONDS, what=what, interval=0.1, max_interval=0.25)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nshown:    {last[0]}\nexpected: {expected}") from None
    return last[0]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (which must come first)."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR", "the first chunk of a PNG is IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# ----------------------------------------------------------------------------------------------- tests


def test_page_and_assets_have_content_types_cache_headers_and_a_self_only_csp(lobby_stack: LobbyStack) -> None:
    with httpx.Client(base_url=lobby_stack.base_url, timeout=10) as http:
        page = http.get("/lobby")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert directives["connect-src"] == "'self'"
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        # No inline script: every <script> has a src, and no element carries an on* handler or style.
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == []
        assert re.search(r"\s(on[a-z]+|style)=", page.text) is None

        assets = dict(re.findall(r'"/lobby/assets/([\w.-]+)\?v=([0-9a-f]{16})"', page.text))
        assert set(assets) == {"lobby.js", "lobby.css", "lobby-icon.svg"}
        types = {"lobby.js": "text/javascript", "lobby.css": "text/css", "lobby-icon.svg": "image/svg+xml"}
        for name, version in assets.items():
            asset = http.get(f"/lobby/assets/{name}", params={"v": version})
            assert asset.status_code == 200, name
            assert asset.headers["content-type"].split(";")[0] == types[name]
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.headers["content-security-policy"] == csp
            stale = http.get(f"/lobby/assets/{name}", params={"v": "0" * 16})
            assert stale.headers["cache-control"] == "no-cache", "an old version must not be cached for a year"
            again = http.get(f"/lobby/assets/{name}", headers={"If-None-Match": asset.headers["etag"]})
            assert again.status_code == 304 and again.content == b""

        revalidated = http.get("/lobby", headers={"If-None-Match": page.headers["etag"]})
        assert revalidated.status_code == 304
        assert http.get("/lobby/assets/missing.js").status_code == 404
        assert http.head("/lobby").status_code == 200


def test_page_renders_the_api_sections_in_order_and_a_screenshot(
    lobby_stack: LobbyStack, page: tuple[Page, PageLog], tmp_path: Path
) -> None:
    browser_page, log = page
    player = lobby_stack.player_id
    token = lobby_stack.token(player)
    lobby = lobby_stack.healthy_lobby(player, token)
    keys = [section["key"] for section in lobby["sections"]]
    assert keys[0] == "because_you_played" and set(keys) == {"because_you_played", "for_you", "trending", "popular"}

    browser_page.goto(lobby_url(lobby_stack, player, token))
    shown = wait_for_sections(browser_page, expected_sections(lobby), "the page to show the API's sections")
    assert all(section["names"] for section in shown), "every section shows games"
    headings = browser_page.get_by_role("heading", level=2).all_inner_texts()
    assert [heading.splitlines()[0] for heading in headings] == [section["title"] for section in lobby["sections"]]
    art = browser_page.get_by_role("img", name=re.compile(r"^Placeholder art for "))
    assert art.count() == sum(len(section["games"]) for section in lobby["sections"])
    gradient = browser_page.eval_on_selector("[data-testid=tile-art]", "node => getComputedStyle(node).backgroundImage")
    assert "linear-gradient" in gradient
    assert browser_page.get_by_test_id("lobby-error").is_hidden()
    assert log.unexpected() == [], "the page logged errors (a CSP violation shows here)"

    shot = tmp_path / "lobby.png"
    browser_page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    height = browser_page.evaluate("document.documentElement.scrollHeight")
    assert len(data) > 10_000
    assert png_size(data) == (VIEWPORT["width"], max(VIEWPORT["height"], height))
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        destination = Path(target) if Path(target).is_absolute() else REPO_ROOT / target
        shutil.copyfile(shot, destination)


def test_page_updates_without_reload_when_recommendations_change(
    lobby_stack: LobbyStack, page: tuple[Page, PageLog]
) -> None:
    browser_page, log = page
    player = lobby_stack.player_id
    token = lobby_stack.token(player)
    before = lobby_stack.healthy_lobby(player, token)
    browser_page.goto(lobby_url(lobby_stack, player, token))
    wait_for_sections(browser_page, expected_sections(before), "the first lobby")
    version = int(browser_page.get_by_test_id("lobby").get_attribute("data-version") or "0")
    browser_page.evaluate("window.lobbyTestMarker = 'not reloaded'")

    changed_games = lobby_stack.change_similar_games(player)

    def api_shows_the_change() -> dict[str, Any] | None:
        lobby = lobby_stack.healthy_lobby(player, token)
        because = next(section for section in lobby["sections"] if section["key"] == "because_you_played")
        shown = [game["gameId"] for game in because["games"]][: len(changed_games)]
        return lobby if shown == changed_games else None

    after = wait_for(api_shows_the_change, timeout=DEADLINE_SECONDS, what="the API to show the changed row")
    assert expected_sections(after) != expected_sections(before)

    wait_for_sections(browser_page, expected_sections(after), "the page to show the changed recommendations")
    assert browser_page.evaluate("window.lobbyTestMarker") == "not reloaded"
    assert int(browser_page.get_by_test_id("lobby").get_attribute("data-version") or "0") > version
    assert log.unexpected() == []


def test_unchanged_lobby_is_not_rendered_again(lobby_stack: LobbyStack, page: tuple[Page, PageLog]) -> None:
    browser_page, _ = page
    player = lobby_stack.other_player_id
    token = lobby_stack.token(player)
    browser_page.goto(lobby_url(lobby_stack, player, token))
    wait_for_sections(browser_page, expected_sections(lobby_stack.healthy_lobby(player, token)), "the lobby")
    lobby = browser_page.get_by_test_id("lobby")
    version = lobby.get_attribute("data-version")
    checked = lobby.get_attribute("data-checked-at")
    # Three more polls of an unchanged lobby: checked again each time, rendered never.
    for _ in range(3):
        wait_for(
            lambda previous=checked: lobby.get_attribute("data-checked-at") != previous,  # type: ignore[misc]
            timeout=DEADLINE_SECONDS,
            what="another poll",
        )
        checked = lobby.get_attribute("data-checked-at")
    assert lobby.get_attribute("data-version") == version


def test_expired_token_shows_an_error(lobby_stack: LobbyStack, page: tuple[Page, PageLog]) -> None:
    browser_page, log = page
    player = lobby_stack.player_id
    expired = lobby_stack.expired_token(player)
    with httpx.Client(base_url=lobby_stack.base_url, timeout=10) as http:
        answer = http.get(f"/v1/players/{player}/lobby", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401

    browser_page.goto(lobby_url(lobby_stack, player, expired))
    error = browser_page.get_by_test_id("lobby-error")
    error.wait_for(state="visible", timeout=DEADLINE_SECONDS * 1000)
    assert browser_page.get_by_role("alert").is_visible()
    assert error.get_attribute("data-kind") == "auth"
    text = error.inner_text()
    assert answer.json()["title"] in text
    assert "pam token" in text
    assert browser_page.get_by_test_id("game-tile").count() == 0
    assert log.unexpected("401") == []


def test_token_of_another_player_and_a_malformed_token_show_errors(
    lobby_stack: LobbyStack, page: tuple[Page, PageLog]
) -> None:
    browser_page, _ = page
    someone_else = lobby_stack.token(lobby_stack.other_player_id)
    browser_page.goto(lobby_url(lobby_stack, lobby_stack.player_id, someone_else))
    error = browser_page.get_by_test_id("lobby-error")
    error.wait_for(state="visible", timeout=DEADLINE_SECONDS * 1000)
    assert error.get_attribute("data-kind") == "forbidden"
    assert browser_page.get_by_test_id("game-tile").count() == 0

    browser_page.goto(lobby_url(lobby_stack, lobby_stack.player_id, "not-a-jwt"))
    wait_for(lambda: error.get_attribute("data-kind") == "auth", timeout=DEADLINE_SECONDS, what="the auth error")
    assert error.is_visible()


def test_form_opens_a_lobby_and_keeps_the_token_in_the_fragment(
    lobby_stack: LobbyStack, page: tuple[Page, PageLog]
) -> None:
    browser_page, log = page
    player = lobby_stack.player_id
    token = lobby_stack.token(player)
    browser_page.goto(f"{lobby_stack.base_url}/lobby?refresh={REFRESH_SECONDS:g}")
    assert "player id" in browser_page.get_by_test_id("lobby-status").inner_text().lower()
    browser_page.get_by_label("Player id").fill(player)
    browser_page.get_by_label("Token").fill(token)
    browser_page.get_by_role("button", name="Open lobby").click()
    lobby = lobby_stack.healthy_lobby(player, token)
    wait_for_sections(browser_page, expected_sections(lobby), "the lobby from the form")
    url = httpx.URL(browser_page.url)
    assert "token" not in url.params, "the token must stay out of the query string (and server logs)"
    assert f"player={player}" in url.fragment
    assert log.unexpected() == []


def test_unreachable_service_is_shown_and_the_page_recovers(
    lobby_stack: LobbyStack, page: tuple[Page, PageLog]
) -> None:
    browser_page, _ = page
    player = lobby_stack.other_player_id
    token = lobby_stack.token(player)
    # The browser's own network layer drops every API request: what a lost connection looks like to the page.
    browser_page.route("**/v1/players/**", lambda route: route.abort("connectionrefused"))
    browser_page.goto(lobby_url(lobby_stack, player, token))
    error = browser_page.get_by_test_id("lobby-error")
    error.wait_for(state="visible", timeout=DEADLINE_SECONDS * 1000)
    assert error.get_attribute("data-kind") == "network"
    assert "Retrying" in error.inner_text()

    browser_page.unroute("**/v1/players/**")
    lobby = lobby_stack.healthy_lobby(player, token)
    wait_for_sections(browser_page, expected_sections(lobby), "the lobby once the service is reachable again")
    assert error.is_hidden()
