// reef dashboard: the little that must run in the browser.
//
// - the management token: read once from the URL printed at start (?token=…), kept in this
//   tab's sessionStorage, sent in the x-reef-token header of state-changing requests (a header,
//   not a cookie, so another site's form cannot act with it);
// - management forms (class "manage", data-action=URL) posted as JSON with the token;
// - a debug enclave's console, streamed live (server-sent events) into <pre id="logs">;
// - the attestation page: the server's verdict and the browser's own (nitro.js), side by side.
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("page-data").textContent || "{}");

  function token() {
    const url = new URL(location.href);
    const given = url.searchParams.get("token");
    if (given) {
      sessionStorage.setItem("reef-token", given);
      url.searchParams.delete("token");
      history.replaceState(null, "", url.toString());
    }
    return sessionStorage.getItem("reef-token") || "";
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", "x-reef-token": token() },
      body: JSON.stringify(body || {}),
    });
    let answer;
    try {
      answer = await response.json();
    } catch (e) {
      answer = { error: "HTTP " + response.status };
    }
    return { status: response.status, answer };
  }

  // Text as HTML, safe in element content and in quoted attributes alike (innerHTML of a text
  // node escapes < > & but not quotes, and some of these strings go into data-* attributes).
  function esc(text) {
    const map = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
    return String(text).replace(/[&<>"']/g, (c) => map[c]);
  }

  // ------------------------------------------------------------ token state and forms

  async function showTokenState() {
    const badge = document.getElementById("token-state");
    if (!badge) return;
    if (!data.manage) {
      badge.textContent = "read-only (management off)";
      return;
    }
    if (!token()) {
      badge.textContent = "read-only (no token)";
      return;
    }
    const { status } = await post("/api/token", {});
    badge.textContent = status === 200 ? "manage" : "read-only (bad token)";
    badge.className = "badge " + (status === 200 ? "ok" : "bad");
  }

  function wireForms() {
    for (const form of document.querySelectorAll("form.manage")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const body = {};
        for (const el of form.elements) {
          if (!el.name) continue;
          body[el.name] = el.type === "checkbox" ? el.checked : el.value;
        }
        const out = form.closest("section").querySelector(".result");
        for (const b of form.querySelectorAll("button")) b.disabled = true;
        if (out) out.textContent = "working…";
        const { status, answer } = await post(form.dataset.action, body);
        for (const b of form.querySelectorAll("button")) b.disabled = false;
        if (out) {
          out.textContent = status === 200 ? "done: " + JSON.stringify(answer) : "refused (" + status + "): " + (answer.error || "") + (answer.hint ? " — " + answer.hint : "");
          out.dataset.status = String(status);
          out.className = "result badge " + (status === 200 ? "ok" : "bad");
        }
      });
    }
  }

  // ------------------------------------------------------------ live logs

  function streamLogs() {
    const pre = document.getElementById("logs");
    if (!pre || !pre.dataset.src) return;
    const source = new EventSource(pre.dataset.src);
    source.onmessage = (event) => {
      pre.textContent += event.data + "\n";
      pre.scrollTop = pre.scrollHeight;
    };
    source.addEventListener("error", () => {
      pre.dataset.ended = "1";
    });
  }

  // ------------------------------------------------------------ attestation

  function verdictHtml(v) {
    const head = v.ok
      ? `<p><span class="badge ok" data-verdict="accepted">accepted</span> ${v.root ? "root" : ""} <b>${esc(v.root ? v.root.name : v.kind || "")}</b>${v.root && v.root.insecure ? ' <span class="badge warn">insecure root</span>' : ""}</p>`
      : `<p><span class="badge bad" data-verdict="rejected" data-reason="${esc(v.reason)}">rejected: ${esc(v.reason)}</span></p><p>${esc(v.message)}</p>`;
    return head;
  }

  function detailsHtml(server, browser) {
    const doc = (server && server.document) || (browser && browser.document);
    if (!doc) return "";
    const imageId = (server && server.verified && server.verified.image_id) || (browser && browser.imageId) || "";
    const rows = [
      ["image id", imageId],
      ["module id", doc.module_id],
      ["timestamp", reefNitro.isoTime(doc.timestamp_ms) + " (" + doc.timestamp_ms + " ms)"],
      ["public key", doc.public_key || "—"],
      ["user data", doc.user_data || "—"],
      ["nonce", doc.nonce || "—"],
    ];
    const pcrs = Object.keys(doc.pcrs).sort((a, b) => a - b).map((k) => [`PCR${k}`, doc.pcrs[k]]);
    const dl = (list) => "<dl>" + list.map(([k, v]) => `<dt>${esc(k)}</dt><dd class="mono">${esc(v)}</dd>`).join("") + "</dl>";
    const certs = ((server && server.certificates) || []).map((c, i) =>
      `<tr><td>${i}</td><td>${esc(c.subject || c.error || "")}</td><td>${esc(c.issuer || "")}</td><td>${c.not_before ? reefNitro.isoTime(c.not_before * 1000) : ""}</td><td>${c.not_after ? reefNitro.isoTime(c.not_after * 1000) : ""}</td><td class="mono">${esc((c.sha256 || "").slice(0, 16))}…</td></tr>`
    ).join("");
    return "<h2>Document</h2>" + dl(rows) + "<h2>PCRs</h2>" + dl(pcrs) +
      '<h2>Certificate chain (root first, leaf last)</h2><div class="scroll"><table><tr><th>#</th><th>subject</th><th>issuer</th><th>not before</th><th>not after</th><th>SHA-256</th></tr>' + certs + "</table></div>";
  }

  function setupAttestation() {
    const button = document.getElementById("verify");
    if (!button) return;
    const area = document.getElementById("document");
    const drop = document.getElementById("drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", async (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const file = e.dataTransfer.files[0];
      if (file) area.value = reefNitro.hex(new Uint8Array(await file.arrayBuffer()));
    });
    document.getElementById("verify-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const mode = document.getElementById("mode").value;
      const endpoint = document.getElementById("endpoint").value.trim();
      const serverBox = document.getElementById("server-verdict");
      const browserBox = document.getElementById("browser-verdict");
      serverBox.dataset.done = browserBox.dataset.done = "";
      serverBox.innerHTML = "<h2>Server</h2><p>verifying…</p>";
      browserBox.innerHTML = "<h2>Browser</h2><p>verifying…</p>";
      const response = await fetch("/api/attestation/verify", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          ...(endpoint ? { endpoint } : { document: area.value }),
          mode,
          collateral: document.getElementById("collateral").value,
          at_s: document.getElementById("at").value,
        }),
      });
      const server = await response.json();
      if (response.status !== 200) {
        serverBox.innerHTML = `<h2>Server</h2><p><span class="badge bad" data-verdict="error">${esc(server.error)}</span></p>`;
        browserBox.innerHTML = "<h2>Browser</h2><p class='muted'>no document</p>";
        serverBox.dataset.done = browserBox.dataset.done = "1";
        return;
      }
      serverBox.innerHTML = "<h2>Server</h2>" + verdictHtml(server) +
        (server.tcb_status ? `<p>TCB status <b id="tcb-status">${esc(server.tcb_status)}</b>${server.advisory_ids.length ? " — " + esc(server.advisory_ids.join(", ")) : ""}</p>` : "");
      serverBox.dataset.done = "1";
      if (server.kind !== "nitro") {
        // Quotes chain to Intel through collateral (CRLs, TCB info): checked by the server only.
        browserBox.innerHTML = "<h2>Browser</h2><p class='muted' data-verdict='n/a'>TDX/SGX quotes are verified by the server only</p>";
        browserBox.dataset.done = "1";
        document.getElementById("details").innerHTML = server.verified ? "<h2>Report</h2><pre class='logs'>" + esc(JSON.stringify(server.verified.report, null, 1)) + "</pre>" : "";
        return;
      }
      // The browser verifies the very bytes the server did (fetched from the endpoint or pasted).
      const bytes = reefNitro.fromHex(server.document_hex);
      const browser = await reefNitro.verifyDocument(bytes, { mode, roots: data.roots || [] });
      browserBox.innerHTML = "<h2>Browser</h2>" + verdictHtml(browser) +
        (browser.ok === server.ok && browser.reason === server.reason
          ? '<p><span class="badge ok" id="agree">both verdicts agree</span></p>'
          : '<p><span class="badge bad" id="disagree">the verdicts differ</span></p>');
      browserBox.dataset.done = "1";
      document.getElementById("details").innerHTML = detailsHtml(server, browser);
    });
  }

  // ------------------------------------------------------------ job page: image id

  async function jobImageId() {
    const source = document.getElementById("attestation-source");
    const target = document.getElementById("image-id");
    if (!source || !target) return;
    if (!source.dataset.endpoint) {
      target.textContent = "no enclave running";
      target.dataset.imageId = "";
      return;
    }
    const response = await fetch("/api/attestation/verify", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ endpoint: source.dataset.endpoint, mode: "live" }),
    });
    const v = await response.json();
    const id = v.verified ? v.verified.image_id : "";
    const hex = (text) => (text || "").toLowerCase().replace(/^0x/, "");
    const attested = v.verified ? hex(v.verified.user_data) : "";
    const bound = hex(source.dataset.bound);
    const unbound = id && !attested ? "; it does not say which job it runs" : "";
    if (id && v.root && v.root.insecure && v.root.name !== "dev") {
      // Oyster's mock root has a published key: anyone (a provider) can sign a fresh document
      // with any PCRs under it, so the id is only what the enclave claims. It is shown as such
      // and never handed on as an attested one.
      target.textContent = id + " (NOT attested: signed under the insecure " + v.root.name +
        " root, whose key is public; only what the enclave claims)";
      target.dataset.insecureRoot = v.root.name;
      target.className = "mono badge warn";
      target.dataset.imageId = "";
      return;
    }
    if (id && attested && bound && attested !== bound) {
      // A reef provider's enclave attests its job: this one attests another, so the provider
      // named someone else's enclave (of the same image, perhaps) as this job's.
      target.textContent = id + " (NOT this job's enclave: it attests another job)";
      target.dataset.otherJob = "yes";
      target.className = "mono badge warn";
      target.dataset.imageId = "";
      return;
    }
    if (id && v.root && v.root.insecure) {
      // This machine's dev root: only its own users hold the key (reef up's local provider).
      target.dataset.insecureRoot = v.root.name;
      target.textContent = id + " (attested live, root dev: this machine's insecure dev root, for local networks only" + unbound + ")";
      target.dataset.imageId = id;
      return;
    }
    target.textContent = id ? id + " (attested live, root " + v.root.name + unbound + ")" : "unverified: " + (v.message || v.error || "");
    target.dataset.imageId = id;
  }

  showTokenState();
  wireForms();
  streamLogs();
  setupAttestation();
  jobImageId();
})();
