// The lobby page: reads the player id and token from the URL fragment (or the form), fetches
// GET /v1/players/{player}/lobby, renders its sections as rows of game tiles, and polls every
// ?refresh=SECONDS (default 5; 0: never), re-rendering only when the lobby's content changed.
// Rejected credentials (401, 403, 422) stop the polling until new ones are given; other failures are
// shown and retried with a growing delay. No inline script, no other host: the CSP allows only self.
"use strict";

(() => {
  const DEFAULT_REFRESH_SECONDS = 5;
  const MIN_REFRESH_SECONDS = 0.2;
  const MAX_RETRY_SECONDS = 60;

  const root = document.querySelector("[data-testid=lobby]");
  const statusLine = document.querySelector("[data-testid=lobby-status]");
  const errorBox = document.querySelector("[data-testid=lobby-error]");
  const errorTitle = errorBox.querySelector(".lobby-error-title");
  const errorDetail = errorBox.querySelector(".lobby-error-detail");
  const playerLine = document.querySelector("[data-testid=lobby-player]");
  const form = document.querySelector("[data-testid=lobby-form]");

  const state = { generation: 0, timer: null, controller: null, signature: null, version: 0, failures: 0 };

  // --- the URL -------------------------------------------------------------------------------------

  function credentialsFromFragment() {
    const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    return { player: (params.get("player") || "").trim(), token: (params.get("token") || "").trim() };
  }

  function refreshSeconds() {
    const raw = new URLSearchParams(window.location.search).get("refresh");
    if (raw === null || raw.trim() === "") return DEFAULT_REFRESH_SECONDS;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) return DEFAULT_REFRESH_SECONDS;
    return value === 0 ? 0 : Math.max(MIN_REFRESH_SECONDS, value);
  }

  // --- the API -------------------------------------------------------------------------------------

  async function fetchLobby(player, token, signal) {
    const response = await fetch(`/v1/players/${encodeURIComponent(player)}/lobby`, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
      signal,
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, ok: response.ok, body };
  }

  function isLobby(body) {
    return body !== null && typeof body === "object" && Array.isArray(body.sections);
  }

  /** What the player sees, without what changes on every call (generatedAt, recommendation ids). */
  function signatureOf(lobby) {
    return JSON.stringify({
      playerId: lobby.playerId,
      degraded: Boolean(lobby.degraded),
      sections: lobby.sections.map((section) => ({
        key: section.key,
        title: section.title,
        source: section.source,
        degraded: Boolean(section.degraded),
        games: (section.games || []).map((game) => [game.gameId, game.name, game.provider]),
      })),
    });
  }

  // --- rendering -----------------------------------------------------------------------------------

  function element(tag, attributes = {}, text = null) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    if (text !== null) node.textContent = text;
    return node;
  }

  /** FNV-1a over the game id: the same id always gets the same art. */
  function hashOf(text) {
    let hash = 0x811c9dc5;
    for (let i = 0; i < text.length; i += 1) {
      hash ^= text.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return hash >>> 0;
  }

  /** Up to two initials, skipping small words ("Book of Dragons": BD). */
  function monogram(name) {
    const words = String(name).split(/\s+/).filter((word) => /[\p{L}\p{N}]/u.test(word));
    const capitalised = words.filter((word) => /^[^\p{L}\p{N}]*[\p{Lu}\p{N}]/u.test(word));
    return (capitalised.length > 0 ? capitalised : words)
      .slice(0, 2)
      .map((word) => word.match(/[\p{L}\p{N}]/u)[0].toUpperCase())
      .join("");
  }

  function renderArt(game) {
    const hash = hashOf(String(game.gameId));
    const hueA = hash % 360;
    const hueB = (hueA + 40 + ((hash >>> 9) % 140)) % 360;
    const angle = (hash >>> 17) % 360;
    const art = element("div", {
      class: "tile-art",
      role: "img",
      "aria-label": `Placeholder art for ${game.name}`,
      "data-testid": "tile-art",
    });
    // CSSOM properties, not a style attribute: the CSP forbids inline styles.
    art.style.setProperty("--art-hue-a", String(hueA));
    art.style.setProperty("--art-hue-b", String(hueB));
    art.style.setProperty("--art-angle", `${angle}deg`);
    art.append(element("span", { class: "tile-monogram", "aria-hidden": "true" }, monogram(game.name)));
    return art;
  }

  function renderTile(game) {
    game = { ...game, name: game.name || String(game.gameId) };
    const tile = element("li", { class: "game-tile", "data-testid": "game-tile", "data-game-id": game.gameId });
    tile.append(renderArt(game));
    const text = element("div", { class: "tile-text" });
    text.append(element("span", { class: "game-name", "data-testid": "game-name", title: game.name }, game.name));
    text.append(element("span", { class: "game-provider", "data-testid": "game-provider" }, game.provider || ""));
    tile.append(text);
    return tile;
  }

  function renderSection(section, index) {
    const headingId = `lobby-section-${index}`;
    const node = element("section", {
      class: "lobby-section",
      "data-testid": "lobby-section",
      "data-section-key": section.key,
      "data-source": section.source,
      "data-degraded": String(Boolean(section.degraded)),
      "data-recommendation-id": section.recommendationId || null,
      "aria-labelledby": headingId,
    });
    const heading = element("h2", { class: "section-heading", id: headingId });
    heading.append(element("span", { class: "section-title", "data-testid": "section-title" }, section.title));
    if (section.degraded) {
      heading.append(
        element(
          "span",
          {
            class: "degraded-marker",
            "data-testid": "degraded-marker",
            title: "Shown from a fallback: a recommendation source was slow or failing",
          },
          "fallback",
        ),
      );
    }
    node.append(heading);
    const games = section.games || [];
    if (games.length === 0) {
      node.append(element("p", { class: "section-empty" }, "No games here right now."));
      return node;
    }
    const row = element("ul", { class: "tile-row", role: "list" });
    for (const game of games) row.append(renderTile(game));
    node.append(row);
    return node;
  }

  function render(lobby) {
    const fragment = document.createDocumentFragment();
    lobby.sections.forEach((section, index) => fragment.append(renderSection(section, index)));
    if (lobby.sections.length === 0) {
      fragment.append(element("p", { class: "section-empty" }, "This lobby has no sections right now."));
    }
    root.replaceChildren(fragment);
    state.version += 1;
    root.dataset.version = String(state.version);
    root.dataset.degraded = String(Boolean(lobby.degraded));
    root.dataset.playerId = lobby.playerId;
  }

  /** Recommendation ids change on every call; keep them current without re-rendering. */
  function updateRecommendationIds(lobby) {
    const nodes = root.querySelectorAll("[data-testid=lobby-section]");
    lobby.sections.forEach((section, index) => {
      const node = nodes[index];
      if (!node) return;
      if (section.recommendationId) node.dataset.recommendationId = section.recommendationId;
      else delete node.dataset.recommendationId;
    });
  }

  // --- status and errors ---------------------------------------------------------------------------

  function clock() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function showError(kind, title, detail) {
    errorBox.dataset.kind = kind;
    errorTitle.textContent = title;
    errorDetail.textContent = detail;
    errorBox.hidden = false;
    root.dataset.stale = String(state.version > 0);
  }

  function clearError() {
    errorBox.hidden = true;
    delete errorBox.dataset.kind;
    errorTitle.textContent = "";
    errorDetail.textContent = "";
    delete root.dataset.stale;
  }

  function problemText(body, fallback) {
    if (body && typeof body === "object") {
      const title = typeof body.title === "string" && body.title ? body.title : fallback;
      const detail = typeof body.detail === "string" ? body.detail : "";
      return { title, detail };
    }
    return { title: fallback, detail: "" };
  }

  const REJECTED = {
    401: ["auth", "The token was rejected", "Get a new token (pam token PLAYER_ID) and open the lobby again."],
    403: ["forbidden", "This token is not for this player", "A token only opens its own player's lobby."],
    404: ["not-found", "No such lobby", "Check the player id."],
    422: ["invalid", "The player id is not valid", "Check the player id."],
  };

  // --- polling -------------------------------------------------------------------------------------

  function schedule(generation, seconds) {
    if (generation !== state.generation || seconds <= 0) return;
    state.timer = window.setTimeout(() => poll(generation), seconds * 1000);
  }

  function stop() {
    state.generation += 1;
    if (state.timer !== null) window.clearTimeout(state.timer);
    state.timer = null;
    if (state.controller !== null) state.controller.abort();
    state.controller = null;
  }

  async function poll(generation) {
    const { player, token } = credentialsFromFragment();
    const refresh = refreshSeconds();
    state.controller = new AbortController();
    let result;
    try {
      result = await fetchLobby(player, token, state.controller.signal);
    } catch (error) {
      if (generation !== state.generation) return;
      result = { status: 0, ok: false, body: null, error };
    }
    if (generation !== state.generation) return;
    root.dataset.checkedAt = new Date().toISOString();

    if (result.ok && isLobby(result.body)) {
      const lobby = result.body;
      state.failures = 0;
      clearError();
      const signature = signatureOf(lobby);
      if (signature !== state.signature) {
        state.signature = signature;
        render(lobby);
        statusLine.textContent = `Updated at ${clock()}${lobby.degraded ? " (some rows from fallbacks)" : ""}.`;
      } else {
        updateRecommendationIds(lobby);
      }
      schedule(generation, refresh);
      return;
    }

    const rejected = REJECTED[result.status];
    if (rejected) {
      const [kind, fallbackTitle, hint] = rejected;
      const { title, detail } = problemText(result.body, fallbackTitle);
      showError(kind, title, [detail, hint].filter(Boolean).join(" "));
      statusLine.textContent = `Stopped at ${clock()}: HTTP ${result.status}.`;
      return; // these credentials will not start working by themselves
    }

    state.failures += 1;
    const retry = Math.min(MAX_RETRY_SECONDS, Math.max(refresh, 1) * 2 ** (state.failures - 1));
    if (result.status === 0) {
      showError("network", "The lobby service cannot be reached", `Retrying in ${Math.round(retry)} s.`);
    } else {
      const { title, detail } = problemText(result.body, `The lobby service answered HTTP ${result.status}`);
      showError("unavailable", title, [detail, `Retrying in ${Math.round(retry)} s.`].filter(Boolean).join(" "));
    }
    statusLine.textContent = `Failed at ${clock()}.`;
    schedule(generation, refresh === 0 ? 0 : retry);
  }

  function start() {
    stop();
    const { player, token } = credentialsFromFragment();
    form.elements.player.value = player;
    form.elements.token.value = token;
    state.signature = null;
    state.failures = 0;
    clearError();
    root.replaceChildren();
    if (!player || !token) {
      playerLine.hidden = true;
      statusLine.textContent = "Enter a player id and a token to open a lobby.";
      return;
    }
    playerLine.hidden = false;
    playerLine.querySelector(".lobby-player-id").textContent = player;
    document.title = `Lobby · ${player}`;
    statusLine.textContent = "Loading…";
    poll(state.generation);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const fragment = new URLSearchParams({
      player: form.elements.player.value.trim(),
      token: form.elements.token.value.trim(),
    }).toString();
    if (window.location.hash.replace(/^#/, "") === fragment) start();
    else window.location.hash = fragment; // hashchange starts it
  });
  window.addEventListener("hashchange", start);
  start();
})();
