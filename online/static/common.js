// Shared by the demo storefront and the operator page: the API key and calls to the API.
//
// The key arrives in the URL's fragment (/demo#key=hrk_...): browsers never send a fragment to a server,
// so it stays out of access logs and Referer headers. It is kept in sessionStorage (this tab only) and
// the fragment is removed from the address bar, so it is not left on screen or in a copied link.
"use strict";

const HR = (() => {
  const STORE = "hybridrec.key";

  function takeKey() {
    const params = new URLSearchParams(location.hash.slice(1));
    const fromHash = params.get("key");
    if (fromHash) {
      sessionStorage.setItem(STORE, fromHash);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(STORE);
  }

  const key = takeKey();

  async function call(method, path, body) {
    const headers = { accept: "application/json" };
    if (key) headers.authorization = "Bearer " + key;
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const why = data && data.message ? data.message : response.statusText;
      const error = new Error(`${method} ${path} answered ${response.status}: ${why}`);
      error.status = response.status;
      throw error;
    }
    return { data, requestId: response.headers.get("x-request-id"), status: response.status };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function needKey() {
    if (key) return false;
    showError(
      "This page needs the API key in its address: open the URL that `hybridrec demo` printed " +
        "(…/demo#key=hrk_…), or add #key=<an API key with the admin and write-events scopes>."
    );
    return true;
  }

  function linkWithKey(path) {
    return key ? `${path}#key=${encodeURIComponent(key)}` : path;
  }

  return { call, el, showError, needKey, linkWithKey };
})();
