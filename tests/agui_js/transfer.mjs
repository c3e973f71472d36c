// The official AG-UI JS client runs a transfer against bankgate-agent serve and answers its interrupt.
// Usage: node transfer.mjs BASE_URL "request" '{"approve": true, "note": "..."}'
// Prints one JSON line: the first run's interrupts, every event type seen, and the final messages.
import { HttpAgent } from "@ag-ui/client";

const [base, request, payload] = process.argv.slice(2);
const agent = new HttpAgent({
  url: `${base}/agent`,
  threadId: `js-${Date.now()}`,
  initialMessages: [{ id: "user-1", role: "user", content: request }],
});
const events = [];
const errors = [];
const subscriber = {
  onEvent({ event }) { events.push(event.type); },
  onRunErrorEvent({ event }) { errors.push(event.message); },
};

await agent.runAgent({}, subscriber);
const interrupts = agent.pendingInterrupts.map((i) => ({ ...i }));
if (interrupts.length !== 1) throw new Error(`expected one interrupt, got ${interrupts.length}`);
const resume = [{ interruptId: interrupts[0].id, status: "resolved", payload: JSON.parse(payload) }];
await agent.runAgent({ resume }, subscriber);
console.log(JSON.stringify({ interrupts, events, errors, pending: agent.pendingInterrupts, messages: agent.messages }));
