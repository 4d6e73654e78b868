// A scripted matrix-js-sdk session against a loom server
// (spec/03-clients/jssdk_spec.lua). Usage: node client.mjs BASE_URL
// Prints one JSON line with what it saw; exits 1 on the first failure.
import * as sdk from "matrix-js-sdk";

const base = process.argv[2];
const need = (cond, what) => { if (!cond) throw new Error("js-sdk scenario failed: " + what); };
const quiet = { log() {}, info() {}, warn() {}, error() {}, debug() {}, trace() {}, getChild() { return quiet; } };

async function register(username) {
  const c = sdk.createClient({ baseUrl: base, logger: quiet });
  let res;
  try {
    res = await c.registerRequest({ username, password: username + "-password" });
  } catch (e) {
    // user-interactive auth: 401 with a session, then m.login.dummy
    need(e.httpStatus === 401 && e.data && e.data.session, "register: expected 401 with a session, got " + e);
    res = await c.registerRequest({ username, password: username + "-password",
      auth: { type: "m.login.dummy", session: e.data.session } });
  }
  need(res.access_token && res.user_id, "register " + username);
  return sdk.createClient({ baseUrl: base, accessToken: res.access_token, userId: res.user_id,
    deviceId: res.device_id, logger: quiet });
}

async function main() {
  const out = {};
  const alice = await register("jsalice");
  const who = await alice.whoami();
  need(who.user_id === alice.getUserId(), "whoami");

  // the full client start: /versions, /pushrules, /capabilities, filters, sync
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("startClient did not reach PREPARED")), 20000);
    alice.on(sdk.ClientEvent.Sync, (state) => {
      if (state === "PREPARED") { clearTimeout(timer); resolve(); }
      if (state === "ERROR") { clearTimeout(timer); reject(new Error("sync error")); }
    });
    alice.startClient({ initialSyncLimit: 5 });
  });
  out.prepared = true;

  const { room_id: roomId } = await alice.createRoom({ name: "js room", topic: "js" });
  out.room_id = roomId;
  const sent = [];
  for (let i = 0; i < 30; i++) {
    const r = await alice.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "js message " + i });
    sent.push(r.event_id);
  }
  alice.stopClient();

  const sync = await alice.http.authedRequest(sdk.Method.Get, "/sync",
    { timeout: "0", filter: JSON.stringify({ room: { timeline: { limit: 5 } } }) });
  const joined = sync.rooms.join[roomId];
  need(joined, "room missing from sync");
  const tl = joined.timeline.events.map((e) => e.event_id);
  need(JSON.stringify(tl) === JSON.stringify(sent.slice(-5)), "sync timeline " + JSON.stringify(tl));
  need(joined.timeline.limited === true, "not limited");

  let token = joined.timeline.prev_batch;
  const back = [];
  for (let page = 0; token && page < 50; page++) {
    const r = await alice.createMessagesRequest(roomId, token, 7, sdk.Direction.Backward);
    back.push(...r.chunk.map((e) => e.event_id));
    if (!r.end || r.chunk.length === 0) break;
    token = r.end;
  }
  const msgs = back.filter((id) => sent.includes(id));
  need(JSON.stringify(msgs) === JSON.stringify(sent.slice(0, 25).reverse()), "paging back: " + msgs.length);
  out.paged_events = back.length;

  const ctx = await alice.http.authedRequest(sdk.Method.Get,
    "/rooms/" + encodeURIComponent(roomId) + "/context/" + encodeURIComponent(sent[10]), { limit: "4" });
  need(ctx.event.event_id === sent[10], "context anchor");
  need(ctx.events_before[0].event_id === sent[9] && ctx.events_after[0].event_id === sent[11], "context neighbours");

  const bob = await register("jsbob");
  await alice.invite(roomId, bob.getUserId());
  await bob.joinRoom(roomId);
  await bob.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "hi from bob" });
  const members = await alice.getJoinedRoomMembers(roomId);
  need(members.joined[bob.getUserId()], "bob not joined");
  await bob.leave(roomId);
  const after = await alice.getJoinedRoomMembers(roomId);
  need(!after.joined[bob.getUserId()], "bob still joined after leaving");
  out.ok = true;
  console.log(JSON.stringify(out));
}

main().then(() => process.exit(0), (e) => { console.error(String(e && e.stack || e)); process.exit(1); });
