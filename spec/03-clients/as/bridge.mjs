// A small bridge on matrix-appservice-bridge, run against loom: it listens
// for the homeserver's transactions on 127.0.0.1, and
//   1. its bot accepts an invite from a Matrix user (alice);
//   2. alice's message reaches the bridge ("its own side": recorded here);
//   3. a message from its side goes into the room as a virtual user, which
//      the bridge registers (m.login.application_service) and joins.
// Usage: node bridge.mjs <homeserver url> <registration.yaml> <port> <alice token> <domain>
// Prints one JSON line: { ok, relayed, virtual_event, seen_by_alice }.
import { Bridge } from "matrix-appservice-bridge";

const [hsUrl, regPath, port, aliceToken, domain] = process.argv.slice(2);
const relayed = [];
let invitedRoom = null;
const deadline = Date.now() + 60000;

async function waitFor(cond, what) {
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function alice(method, path, body) {
  const res = await fetch(hsUrl + path, {
    method, headers: { Authorization: "Bearer " + aliceToken, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(method + " " + path + ": " + res.status + " " + JSON.stringify(json));
  return json;
}

const bridge = new Bridge({
  homeserverUrl: hsUrl,
  domain,
  registration: regPath,
  disableStores: true,
  disableContext: true,
  controller: {
    onUserQuery: () => ({}),
    onEvent: async (request) => {
      const ev = request.getData();
      if (ev.type === "m.room.member" && ev.state_key === bridge.getBot().getUserId()
          && ev.content.membership === "invite") {
        await bridge.getIntent().join(ev.room_id);
        invitedRoom = ev.room_id;
      } else if (ev.type === "m.room.message" && !ev.sender.startsWith("@_bridge_")) {
        relayed.push({ sender: ev.sender, body: ev.content.body, room_id: ev.room_id });
      }
    },
  },
});

try {
  await bridge.run(Number(port), undefined, "127.0.0.1");
  const bot = bridge.getBot().getUserId();
  // 1. alice makes a room and invites the bot
  const { room_id: room } = await alice("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" });
  await alice("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/invite`, { user_id: bot });
  await waitFor(() => invitedRoom === room, "the bot to join");
  // 2. alice's message reaches the bridge
  await alice("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/1`,
    { msgtype: "m.text", body: "hello from matrix" });
  await waitFor(() => relayed.length > 0, "alice's message at the bridge");
  // 3. a message from the other side as a virtual user
  const ghost = bridge.getIntent(`@_bridge_remote1:${domain}`);
  const sent = await ghost.sendText(room, "hello from the other side");
  const page = await alice("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/messages?dir=b&limit=20`);
  const seen = page.chunk.find((e) => e.event_id === sent.event_id);
  console.log(JSON.stringify({
    ok: true, relayed, virtual_event: sent.event_id,
    seen_by_alice: seen ? { sender: seen.sender, body: seen.content.body } : null,
  }));
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e), relayed }));
  process.exit(1);
}
