// The approval desk's only script: WebAuthn ceremonies (enroll, sign in, sign a decision).
// Options come from the server as JSON (base64url for binary fields); answers go back the same way.
"use strict";

const b64 = {
  decode(text) {
    const s = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    return Uint8Array.from(s, (c) => c.charCodeAt(0)).buffer;
  },
  encode(buffer) {
    const s = String.fromCharCode(...new Uint8Array(buffer));
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
};

function creationOptions(o) {
  return {
    ...o,
    challenge: b64.decode(o.challenge),
    user: { ...o.user, id: b64.decode(o.user.id) },
    excludeCredentials: (o.excludeCredentials || []).map((c) => ({ ...c, id: b64.decode(c.id) })),
  };
}

function requestOptions(o) {
  return {
    ...o,
    challenge: b64.decode(o.challenge),
    allowCredentials: (o.allowCredentials || []).map((c) => ({ ...c, id: b64.decode(c.id) })),
  };
}

function credentialJSON(cred) {
  const r = cred.response;
  const response = { clientDataJSON: b64.encode(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = b64.encode(r.attestationObject);
    if (r.getTransports) response.transports = r.getTransports();
  } else {
    response.authenticatorData = b64.encode(r.authenticatorData);
    response.signature = b64.encode(r.signature);
    if (r.userHandle) response.userHandle = b64.encode(r.userHandle);
  }
  return { id: cred.id, rawId: b64.encode(cred.rawId), type: cred.type, response,
           clientExtensionResults: cred.getClientExtensionResults(),
           authenticatorAttachment: cred.authenticatorAttachment || undefined };
}

const base = document.body.dataset.base;

async function post(path, body) {
  const reply = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await reply.json().catch(() => ({ message: `The desk answered ${reply.status}.` }));
  if (!reply.ok) throw new Error(data.message || `The desk answered ${reply.status}.`);
  return data;
}

function say(text, kind) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = "status " + (kind || "");
}

function busy(buttons, on) {
  for (const b of buttons) b.disabled = on;
}

async function run(buttons, work) {
  busy(buttons, true);
  say("Waiting for your passkey…");
  try {
    const next = await work();
    say("Done.", "ok");
    window.location.assign(next.redirect);
  } catch (error) {
    say(error.message || String(error), "error");
    busy(buttons, false);
    // The pressed button was disabled while it worked, which dropped focus to the page's top: a keyboard or
    // screen reader user is taken to the message instead (the buttons are just before it).
    document.getElementById("status").focus();
  }
}

// The enrollment link's token comes in the fragment, which no request carries (a proxy's log, a Referer). Left in
// the address it would stay in the history, live until used: kept for this tab and taken out of the address at once.
// An older release's link carried it in the query (`?token=`): still honoured until it expires, and taken out alike.
function enrollmentToken() {
  const given =
    new URLSearchParams(location.hash.slice(1)).get("token") ?? new URLSearchParams(location.search).get("token");
  if (given) {
    sessionStorage.setItem("bankgate-enrollment", given);
    history.replaceState(null, "", location.pathname);
  }
  return given ?? sessionStorage.getItem("bankgate-enrollment");
}

function enroll(button, token) {
  run([button], async () => {
    if (!token) throw new Error("This page has no enrollment link's token: open the link exactly as you received it.");
    const { nonce, options } = await post("/enroll/options", { token });
    const cred = await navigator.credentials.create({ publicKey: creationOptions(options) });
    return post("/enroll/finish", { token, nonce, credential: credentialJSON(cred) });
  });
}

function signIn(button) {
  run([button], async () => {
    const { nonce, options } = await post("/signin/options", {});
    const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
    const done = await post("/signin/finish", { nonce, credential: credentialJSON(cred) });
    // A page asked for signed out (an approval's link) is answered with this form at its own address: that page
    // again, now signed in. The address is the page's own, never one a request carried (no open redirect), and
    // absolute: a path beginning "//" (a proxy that merges slashes) would otherwise name another host.
    return location.pathname === base + "/signin" ? done : { redirect: location.origin + location.pathname };
  });
}

// A page answered with the sign-in form at its own address may only have come without the desk's cookies: they are
// SameSite=Strict, so a link followed from another site (a chat client, a mail) carries none though the approver is
// signed in. Loaded once more by this page itself, a same-site navigation, it comes with them. Once per address and
// tab: signed out, the second load shows the form.
function askedAgain() {
  if (location.pathname === base + "/signin") return false;
  const key = "bankgate-asked-again:" + location.pathname;
  try {
    if (sessionStorage.getItem(key)) {
      sessionStorage.removeItem(key);
      return false;
    }
    sessionStorage.setItem(key, "1");
  } catch {
    return false; // storage blocked: no way to load only once, so the form is shown
  }
  location.replace(location.origin + location.pathname);
  return true;
}

function decide(section, verdict) {
  const ref = section.dataset.ref;
  const note = document.getElementById("note").value;
  const confirmation = document.getElementById("confirmation")?.value;
  run(section.querySelectorAll("button"), async () => {
    const shown = section.dataset.shown;  // what this page showed: an approval changed since is not signed
    const { nonce, options } = await post(`/approvals/${ref}/challenge`, { verdict, shown });
    const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
    return post(`/approvals/${ref}/decide`, { verdict, note, confirmation, nonce, credential: credentialJSON(cred) });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const register = document.getElementById("register");
  if (register) {
    const token = enrollmentToken();
    register.addEventListener("click", () => enroll(register, token));
  }
  const signin = document.getElementById("signin");
  if (signin && askedAgain()) return;
  if (signin) signin.addEventListener("click", () => signIn(signin));
  const section = document.getElementById("decide");
  if (section) {
    for (const button of section.querySelectorAll("button[data-verdict]")) {
      button.addEventListener("click", () => decide(section, button.dataset.verdict));
    }
  }
});
