// Admin forms of the optialloc status page: each form sends one JSON API request with the
// bearer token typed into #admin-token (kept for this tab only), then refreshes the queue.
(function () {
  "use strict";
  const token = document.getElementById("admin-token");
  token.value = sessionStorage.getItem("optialloc-admin-token") || "";
  token.addEventListener("change", () => sessionStorage.setItem("optialloc-admin-token", token.value));
  const out = document.getElementById("admin-result");
  document.querySelectorAll("form.admin").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      const data = Object.fromEntries(new FormData(form).entries());
      let url = form.dataset.url;
      const body = {};
      for (const [key, value] of Object.entries(data)) {
        if (url.includes("{" + key + "}")) url = url.replace("{" + key + "}", encodeURIComponent(value));
        else if (key === form.dataset.list) body[key] = value.split(/[\s,]+/).filter(Boolean);
        else if (value !== "") body[key] = Number(value);
      }
      const init = { method: form.dataset.method, headers: { Authorization: "Bearer " + token.value } };
      if (form.dataset.method !== "DELETE" && Object.keys(body).length) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      try {
        const answer = await fetch(url, init);
        const json = await answer.json().catch(() => ({}));
        const text = json.message || (typeof json.detail === "string" ? json.detail : JSON.stringify(json.detail));
        out.textContent = answer.status + ": " + text;
        out.className = answer.ok ? "ok" : "error";
        if (answer.ok) setTimeout(() => { htmx.trigger("#queue", "refresh"); htmx.trigger("#overview", "refresh"); }, 1200);
      } catch (err) {
        out.textContent = "request failed: " + err;
        out.className = "error";
      }
    });
  });
})();
