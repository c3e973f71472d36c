// The browser chat: one AG-UI thread per page, runs streamed over SSE from POST /agent.
// Every text from the server is shown with textContent, never parsed as HTML.

const log = document.getElementById("log");
const form = document.getElementById("ask");
const input = document.getElementById("request");
const send = document.getElementById("send");
const threadId = `thread-${randomId()}`;
const token = takeToken();
const toolCalls = new Map(); // toolCallId -> {name, args, element}
const results = new Map(); // toolCallId -> the tool's result, once it arrived
let clockOffset = 0; // the server's clock minus this computer's: deadlines are the server's
let missed = null; // while a run's stream replays what the page missed, the section that shows it

function serverNow() {
  return Date.now() + clockOffset;
}

function takeToken() {
  // The token comes in the address's fragment, which browsers never send; left there it would stay in the
  // history and in every link copied from this tab, so it is kept for this tab only and taken out of the address.
  const given = new URLSearchParams(location.hash.slice(1)).get("token");
  if (given) {
    sessionStorage.setItem("bankgate-token", given);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return given ?? sessionStorage.getItem("bankgate-token");
}

function randomId() {
  // A thread's id is all that tells one browser's conversation from another's under the same token, so it is
  // never guessable: randomUUID exists only in a secure context (https, loopback), getRandomValues everywhere.
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function append(node) {
  (missed ?? log).append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  append(element("div", "bubble user", text));
  runAgent({ messages: [{ id: `msg-${randomId()}`, role: "user", content: text }] });
});

// The host keeps what a run did while the page's stream was gone and sends it at the start of the next run.
const MISSED_LATER = "Anything the run did meanwhile is shown when you send your next message.";

// Runs one request; resolves to the run's last event (or null when the connection failed).
async function runAgent(extra) {
  setBusy(true);
  const body = { threadId, runId: `run-${randomId()}`, messages: [], tools: [], context: [], state: {}, forwardedProps: {}, ...extra };
  const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let interrupted = false;
  let last = null;
  try {
    const response = await fetch("/agent", { method: "POST", headers, body: JSON.stringify(body) });
    if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
    // Date is whole seconds: the server's clock may be up to 1 s later, so count as if it were (never show time that is gone).
    const date = Date.parse(response.headers.get("date") ?? "");
    if (!Number.isNaN(date)) clockOffset = date + 1000 - Date.now();
    for await (const event of events(response.body)) {
      interrupted = handle(event) || interrupted;
      last = event;
    }
    missed = null; // a stream cut inside the replayed section: what follows is not part of it
    if (last?.type !== "RUN_FINISHED" && last?.type !== "RUN_ERROR") {
      append(element("div", "bubble error", `The connection ended before the run finished. ${MISSED_LATER}`));
    }
  } catch (error) {
    missed = null;
    const cut = error instanceof TypeError; // the network failed (not a refusal): the run may have gone on
    append(element("div", "bubble error", `Connection problem: ${error.message}${cut ? `. ${MISSED_LATER}` : ""}`));
  } finally {
    setBusy(interrupted);
  }
  return last;
}

async function* events(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

let message = null;

// Returns true when the run ended on an interrupt (the input stays locked until it is answered).
function handle(event) {
  switch (event.type) {
    case "TEXT_MESSAGE_START":
      message = append(element("div", "bubble assistant", ""));
      break;
    case "TEXT_MESSAGE_CONTENT":
      message.textContent += event.delta;
      message.scrollIntoView({ block: "end" });
      break;
    case "TEXT_MESSAGE_END":
      message = null;
      break;
    case "TOOL_CALL_START": {
      const node = append(element("div", "tool"));
      node.append(element("span", "label", "tool "), element("code", "name", event.toolCallName), element("code", "args", ""));
      node.dataset.toolCallId = event.toolCallId;
      toolCalls.set(event.toolCallId, { name: event.toolCallName, args: "", element: node });
      break;
    }
    case "TOOL_CALL_ARGS": {
      const call = toolCalls.get(event.toolCallId);
      call.args += event.delta;
      call.element.querySelector(".args").textContent = ` ${call.args}`;
      break;
    }
    case "TOOL_CALL_RESULT": {
      const call = toolCalls.get(event.toolCallId);
      const target = call ? call.element : append(element("div", "tool"));
      let result = {};
      try { result = JSON.parse(event.content); } catch { result = { message: event.content }; }
      results.set(event.toolCallId, result);
      const status = result.status ?? "done";
      target.append(element("span", `status ${status}`, status));
      if (result.message) target.append(element("div", "result", result.message));
      break;
    }
    case "RUN_ERROR":
      append(element("div", "bubble error", event.message));
      break;
    case "CUSTOM":
      if (event.name === "bankgate.warning") append(element("div", "bubble error", String(event.value)));
      if (event.name === "bankgate.missed.begin") missed = missedSection(event.value ?? {});
      if (event.name === "bankgate.missed.end") missed = null;
      break;
    case "RUN_FINISHED":
      if (event.outcome?.type === "interrupt") {
        // The request box that had focus is disabled until the answer: focus goes to the (first) card's
        // heading, so that a screen reader reads it and Tab goes on to its fields and buttons.
        const cards = event.outcome.interrupts.map(approvalCard);
        cards[0]?.querySelector("h2").focus();
        return true;
      }
      break;
  }
  return false;
}

// What happened while the page's stream was gone (calls, their results, replies), set apart from the new run.
function missedSection({ forgotten = 0 }) {
  const section = append(element("section", "missed"));
  section.append(element("h2", "", "While you were disconnected"));
  let note = "The connection dropped before these results reached this page; they happened then.";
  if (forgotten > 0) note += ` ${forgotten} earlier run(s) are not shown: check balances before asking again.`;
  section.append(element("p", "hint", note));
  return section;
}

// The card's heading, the server's question and the facts of the call it concerns.
function cardWithFacts(interrupt, className, title) {
  const card = append(element("section", className));
  card.dataset.interruptId = interrupt.id;
  const call = toolCalls.get(interrupt.toolCallId);
  const heading = element("h2", "", `${title}${call ? `: ${call.name}` : ""}`);
  heading.tabIndex = -1;
  card.append(heading);
  card.append(element("div", "question", interrupt.message ?? ""));
  const facts = element("dl");
  let args = {};
  try { args = JSON.parse(call?.args || "{}"); } catch { args = {}; }
  const shown = { amount: "Amount", from_account: "From", to_account: "To", account_id: "Account", sweep_to: "Sweep to" };
  for (const [key, label] of Object.entries(shown)) {
    if (args[key] !== undefined && args[key] !== null) facts.append(element("dt", "", label), element("dd", key, String(args[key])));
  }
  if (interrupt.metadata?.reference) facts.append(element("dt", "", "Reference"), element("dd", "reference", interrupt.metadata.reference));
  card.append(facts);
  return card;
}

// The countdown's element: a timer, not read out at each tick although it sits in the live log.
function timer() {
  const node = element("span", "countdown", "");
  node.setAttribute("role", "timer");
  node.setAttribute("aria-live", "off");
  return node;
}

// A countdown to the interrupt's deadline; `expired` runs once it reaches zero. Returns a stop function.
function countdownTo(interrupt, countdown, expired) {
  const deadline = interrupt.expiresAt ? Date.parse(interrupt.expiresAt) : null;
  let timer = null;
  const tick = () => {
    if (deadline === null) return;
    const left = Math.max(0, Math.round((deadline - serverNow()) / 1000));
    countdown.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`;
    if (left === 0) {
      clearInterval(timer);
      expired();
    }
  };
  tick();
  timer = setInterval(tick, 1000);
  return () => { clearInterval(timer); countdown.textContent = ""; };
}

// The host's refusals of a resume that leave it unanswered by this card (another answer counted, or none can now).
const NOT_APPLIED = new Set(["interrupt_answered", "interrupt_expired", "unknown_interrupt"]);

// When the host refused the card's answer (`last` is the resume's last event), the card's outcome says so.
function sayIfNotApplied(outcome, last, refused = "Your answer did not count: ") {
  if (last?.type === "RUN_ERROR" && NOT_APPLIED.has(last.code)) outcome.textContent = `${refused}${last.message}`;
}

// What a desk card ends on: the status the server reported for its call.
function deskOutcome(result) {
  const status = result.status ?? "done";
  if (status === "executed" || status === "rejected") return `Decided at the desk: ${status}.`;
  if (status === "expired") return "Expired: nothing was executed.";
  return `Ended: ${status}.`;
}

function approvalCard(interrupt) {
  if (interrupt.reason === "desk_approval_required") return deskCard(interrupt);
  const card = cardWithFacts(interrupt, "approval", "Approval needed");
  const schema = interrupt.responseSchema ?? { properties: {} };
  const fields = {};
  if (schema.properties?.confirmation) {
    const wanted = interrupt.metadata?.confirm;
    const label = element("label", "", wanted ? `Type ${wanted} to confirm` : "Confirmation");
    fields.confirmation = element("input");
    fields.confirmation.name = "confirmation";
    fields.confirmation.autocomplete = "off";
    label.append(fields.confirmation);
    card.append(label);
  }
  if (schema.properties?.note) {
    const label = element("label", "", "Note for the audit log (optional)");
    fields.note = element("input");
    fields.note.name = "note";
    label.append(fields.note);
    card.append(label);
  }
  const actions = element("div", "actions");
  const approve = element("button", "approve", "Approve");
  const reject = element("button", "reject", "Reject");
  const countdown = timer();
  actions.append(approve, reject, countdown);
  card.append(actions);
  const outcome = element("div", "outcome", "");
  card.append(outcome);

  let stop = () => {};
  const enable = (enabled) => {
    approve.disabled = reject.disabled = !enabled;
    Object.values(fields).forEach((field) => { field.disabled = !enabled; });
  };
  const finish = (text) => {
    stop();
    enable(false);
    outcome.textContent = text;
  };
  const open = () => {
    enable(true);
    stop = countdownTo(interrupt, countdown, () => {
      finish("Expired: the approval window closed and nothing was executed.");
      setBusy(false);
    });
  };
  open();

  const answer = async (yes) => {
    const payload = { approve: yes };
    if (fields.note?.value) payload.note = fields.note.value;
    if (yes && fields.confirmation) payload.confirmation = fields.confirmation.value.trim();
    finish(yes ? "You approved this." : "You rejected this.");
    const last = await runAgent({ resume: [{ interruptId: interrupt.id, status: "resolved", payload }] });
    if (last?.type !== "RUN_ERROR") return;
    if (last.code === "invalid_payload") {
      // Refused without being answered (say, a mistyped confirmation): the question is still open.
      outcome.textContent = last.message;
      open();
      setBusy(true);
      (fields.confirmation ?? approve).focus();
    } else {
      sayIfNotApplied(outcome, last);
    }
  };
  approve.addEventListener("click", () => answer(true));
  reject.addEventListener("click", () => answer(false));
  return card;
}

// A desk approval: the decision is signed at bankgate's approval desk, so the card shows the link
// (opened only when the person clicks it, in a new tab) and resumes the run once they have decided.
// Raised again with the same id while the desk has not decided: the existing card says so. Returns the card.
function deskCard(interrupt) {
  const existing = document.querySelector(`section.desk[data-interrupt-id="${CSS.escape(interrupt.id)}"]`);
  if (existing) {
    existing.restart(interrupt);
    return existing;
  }
  const card = cardWithFacts(interrupt, "approval desk", "Approval at the desk");
  const link = element("a", "desk-link", "Approve at the desk");
  const href = interrupt.metadata?.approval_url ?? "";
  if (/^https?:\/\//i.test(href)) link.href = href; // a web page, never a script URL
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  const url = element("div", "desk-url", link.href);
  const hint = element("p", "hint", "Sign in at the desk with your passkey and approve or reject there; then come back and continue.");
  const actions = element("div", "actions");
  const decided = element("button", "decided", "I have decided at the desk — continue");
  const withdraw = element("button", "reject withdraw", "Withdraw");
  const countdown = timer();
  actions.append(decided, withdraw, countdown);
  const outcome = element("div", "outcome", "");
  card.append(link, url, hint, actions, outcome);

  let stop = () => {};
  let raised = 0; // how many times the interrupt was raised: again means the desk had not decided
  const finish = (text) => {
    stop();
    decided.disabled = withdraw.disabled = true;
    outcome.textContent = text;
  };
  // Continues the run (once past the deadline, reads the rest of it) and ends on the call's outcome as the run
  // reports it: a desk yes signed in time may run after the deadline, so the clock alone never tells.
  const proceed = async (checking, refused) => {
    finish(checking);
    const round = raised;
    const last = await runAgent({ resume: [{ interruptId: interrupt.id, status: "resolved" }] });
    if (raised !== round) return; // raised again: the desk had not decided, and the card says so
    const result = results.get(interrupt.toolCallId);
    if (result) outcome.textContent = deskOutcome(result);
    else if (last?.type === "RUN_FINISHED") outcome.textContent = "The run ended without reporting this call's outcome.";
    else sayIfNotApplied(outcome, last, refused);
  };
  card.restart = (again) => {
    raised += 1;
    decided.disabled = withdraw.disabled = false;
    outcome.textContent = again.metadata?.desk_status === "still_pending"
      ? "The desk has not decided yet. Decide there, then continue."
      : "";
    stop = countdownTo(again, countdown, () => proceed(
      "The deadline passed; checking the desk's decision…",
      "The deadline passed; this call's outcome cannot be read here: ",
    ));
  };
  card.restart(interrupt);
  decided.addEventListener("click", () => proceed("Checking the desk's decision…"));
  withdraw.addEventListener("click", async () => {
    finish("You withdrew this request.");
    const last = await runAgent({ resume: [{ interruptId: interrupt.id, status: "cancelled" }] });
    sayIfNotApplied(outcome, last);
    if (last?.type === "RUN_ERROR" && last.code === "desk_decision_pending") {
      // The server already waits for the desk (it holds the call): the card stays until the desk decides.
      card.restart({ ...interrupt, metadata: { ...interrupt.metadata, desk_status: "still_pending" } });
      setBusy(true);
    }
  });
  return card;
}

function setBusy(busy) {
  input.disabled = send.disabled = busy;
  if (!busy) input.focus();
}
