// The demo storefront: pick a user (or an anonymous visitor), see "For you", click items, watch it re-rank.
"use strict";

(() => {
  const { call, el, showError } = HR;
  const K = 8; // items in the "For you" row
  const ON_SHELF = 6; // items shown per category
  const LOOKUP = 200; // items per category fetched to name recommended items
  const ANONYMOUS_PATH = "anonymous"; // the user id in the path of an anonymous visitor's requests

  const state = { user: "", session: null, clicked: [], titles: new Map(), categories: new Map() };
  const $ = (id) => document.getElementById(id);

  function itemCard(itemId, extra) {
    const title = state.titles.get(itemId) || itemId;
    const category = state.categories.get(itemId) || "";
    return el(
      "li",
      { class: "card", "data-item": itemId, title: `click: post an event for ${itemId}`, onclick: () => clickItem(itemId) },
      thumb(category),
      el("div", { class: "title", text: title }),
      el("div", { class: "muted small", text: itemId }),
      ...(extra || [])
    );
  }

  function thumb(category) {
    const node = el("div", { class: "thumb", "data-category": category, text: category || "?" });
    const digits = parseInt(category.replace(/\D/g, ""), 10);
    if (!Number.isNaN(digits)) node.style.background = `hsl(${(digits * 47) % 360}, 55%, 52%)`;
    return node;
  }

  async function loadUsers() {
    const { data } = await call("GET", "/demo/users?n=12");
    const picker = $("user-picker");
    for (const user of data.user_ids) picker.append(el("option", { value: user, text: `user ${user}` }));
  }

  async function loadShelves() {
    const { data } = await call("GET", `/items?per_category=${LOOKUP}`);
    const shelves = $("shelves");
    shelves.replaceChildren();
    for (const shelf of data.categories) {
      for (const item of shelf.items) {
        state.titles.set(item.item_id, item.title);
        state.categories.set(item.item_id, shelf.category);
      }
    }
    for (const shelf of data.categories) {
      const row = el("ol", { class: "row shelf", "data-category": shelf.category });
      for (const item of shelf.items.slice(0, ON_SHELF)) row.append(itemCard(item.item_id));
      shelves.append(el("div", { class: "shelf-block" }, el("h3", { text: `Category ${shelf.category}` }), row));
    }
  }

  async function newSession() {
    const body = state.user ? { user_id: state.user } : {};
    const { data } = await call("POST", "/sessions", body);
    state.session = data.session_id;
    state.clicked = [];
    $("session-id").textContent = state.session.slice(0, 10) + "…";
    renderSession();
    await loadRecommendations();
  }

  function renderSession() {
    const box = $("session-items");
    box.replaceChildren();
    if (!state.clicked.length) {
      box.textContent = "nothing yet";
      return;
    }
    for (const itemId of state.clicked) {
      box.append(el("span", { class: "chip", "data-item": itemId, text: state.titles.get(itemId) || itemId }));
    }
  }

  async function loadRecommendations() {
    const path = encodeURIComponent(state.user || ANONYMOUS_PATH);
    const query = new URLSearchParams({ k: String(K) });
    if (state.session) query.set("session_id", state.session);
    const { data, requestId } = await call("GET", `/recommendations/${path}?${query}`);
    $("strategy").textContent = data.strategy;
    $("strategy").dataset.strategy = data.strategy;
    $("flags").replaceChildren(...data.flags.map((f) => el("span", { class: "flag", text: f })));
    $("took").textContent = data.took_ms.toFixed(2);
    $("model-version").textContent = data.model_version;
    $("request-id").textContent = requestId ? requestId.slice(0, 8) : "–";
    const row = $("for-you");
    row.style.setProperty("--columns", String(K));
    row.replaceChildren(
      ...data.items.map((item) =>
        itemCard(item.item_id, [
          el("div", { class: "reason", "data-reason": item.reason, text: describe(item.reason) }),
          el("div", { class: "muted small", text: `score ${item.score.toFixed(3)}` }),
        ])
      )
    );
  }

  function describe(reason) {
    const [kind, other] = reason.split(":");
    const name = other ? state.titles.get(other) || other : "";
    switch (kind) {
      case "for_you":
        return "for you";
      case "similar_to":
        return `similar to ${name}`;
      case "often_next_to":
        return `often next to ${name}`;
      case "popular_in_category":
        return "popular in category";
      default:
        return reason.replace("_", " ");
    }
  }

  async function clickItem(itemId) {
    try {
      const event = { session_id: state.session, item_id: itemId, event_type: "click" };
      if (state.user) event.user_id = state.user;
      await call("POST", "/events", event);
      state.clicked.push(itemId);
      renderSession();
      await loadRecommendations();
      showError("");
    } catch (error) {
      showError(error.message);
    }
  }

  async function start() {
    $("ops-link").href = HR.linkWithKey("/ops");
    if (HR.needKey()) return;
    try {
      await Promise.all([loadUsers(), loadShelves()]);
      const picker = $("user-picker");
      if (picker.options.length > 1) picker.selectedIndex = 1; // a known user first: the precomputed tier
      state.user = picker.value;
      picker.addEventListener("change", () => {
        state.user = picker.value;
        newSession().catch((e) => showError(e.message));
      });
      $("new-session").addEventListener("click", () => newSession().catch((e) => showError(e.message)));
      await newSession();
      document.body.dataset.ready = "true";
    } catch (error) {
      showError(error.message);
    }
  }

  start();
})();
