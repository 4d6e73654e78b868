// matrix-js-sdk against loom: edits and threads
// (spec/03-clients/jssdk_relations_spec.lua). Usage: node relations.mjs BASE_URL
// Alice edits a message and starts a thread that bob replies in. A client
// started afterwards with thread support, and a short first timeline, pages
// back and sees the message with its edit applied from the server's bundled
// m.replace, the thread's replies from the bundled m.thread summary and
// /relations, and the room's threads from /threads.
// Prints one JSON line with what it saw; exits 1 on the first failure.
import * as sdk from "matrix-js-sdk";

const base = process.argv[2];
const need = (cond, what) => { if (!cond) throw new Error("js-sdk relations scenario failed: " + what); };
const quiet = { log() {}, info() {}, warn() {}, error() {}, debug() {}, trace() {}, getChild() { return quiet; } };

async function register(username) {
  const c = sdk.createClient({ baseUrl: base, logger: quiet });
  let res;
  try {
    res = await c.registerRequest({ username, password: username + "-password" });
  } catch (e) {
    need(e.httpStatus === 401 && e.data && e.data.session, "register: expected 401 with a session, got " + e);
    res = await c.registerRequest({ username, password: username + "-password",
      auth: { type: "m.login.dummy", session: e.data.session } });
  }
  need(res.access_token && res.user_id, "register " + username);
  return { user_id: res.user_id, access_token: res.access_token, device_id: res.device_id };
}

const client = (login, extra = {}) => sdk.createClient({ baseUrl: base, accessToken: login.access_token,
  userId: login.user_id, deviceId: login.device_id, logger: quiet, ...extra });

// Resolve once check() holds, re-checked on every sync of the client and
// every 100 ms.
function until(c, what, check, ms = 15000) {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true; clearTimeout(timer); clearInterval(tick); c.off(sdk.ClientEvent.Sync, onSync);
      if (err) reject(err); else resolve();
    };
    const timer = setTimeout(() => finish(new Error("timed out: " + what)), ms);
    const onSync = () => { try { if (check()) finish(); } catch (e) { finish(e); } };
    const tick = setInterval(onSync, 100);
    c.on(sdk.ClientEvent.Sync, onSync);
    onSync();
  });
}

const text = (body, extra = {}) => ({ msgtype: "m.text", body, ...extra });

async function main() {
  const out = {};
  const aliceLogin = await register("relalice");
  const bobLogin = await register("relbob");
  const alice = client(aliceLogin);
  const bobSender = client(bobLogin);
  const { room_id: roomId } = await alice.createRoom({ preset: "public_chat" });
  await bobSender.joinRoom(roomId);

  const { event_id: orig } = await alice.sendEvent(roomId, "m.room.message", text("helo wrold"));
  const { event_id: edit } = await alice.sendEvent(roomId, "m.room.message", text("* hello world", {
    "m.new_content": text("hello world"), "m.relates_to": { rel_type: "m.replace", event_id: orig } }));
  const { event_id: root } = await alice.sendEvent(roomId, "m.room.message", text("thread root"));
  const replies = [];
  for (let i = 1; i <= 3; i++) {
    const r = await bobSender.sendEvent(roomId, root, "m.room.message",
      text("reply " + i, { "m.relates_to": { rel_type: "m.thread", event_id: root } }));
    replies.push(r.event_id);
  }
  for (let i = 1; i <= 6; i++) await alice.sendEvent(roomId, "m.room.message", text("filler " + i));

  // bob's client starts now: the edit and the thread are history to it
  const bob = client(bobLogin, { threadSupport: true });
  bob.startClient({ threadSupport: true, initialSyncLimit: 2 });
  await until(bob, "PREPARED", () => bob.isInitialSyncComplete());
  const room = bob.getRoom(roomId);
  need(room, "room missing");
  for (let i = 0; i < 10 && !room.findEventById(orig); i++) await bob.scrollback(room, 10);
  const ev = room.findEventById(orig);
  need(ev, "the edited message never came back");
  out.edited_body = ev.getContent().body;
  out.replaced_by = ev.replacingEventId();
  need(out.edited_body === "hello world", "edit not applied: " + out.edited_body);
  need(out.replaced_by === edit, "replacing event " + out.replaced_by);
  need(ev.getOriginalContent().body === "helo wrold", "original content changed on the server");

  await room.fetchRoomThreads();
  await until(bob, "thread listed", () => room.getThreads().some((t) => t.id === root));
  const thread = room.getThread(root);
  need(thread, "no thread for the root");
  await until(bob, "thread replies", () => thread.length === 3 && thread.replyToEvent?.getId() === replies[2]);
  out.thread_length = thread.length;
  out.latest_reply = thread.replyToEvent.getContent().body;
  out.threads = room.getThreads().map((t) => t.id === root ? "root" : t.id);
  // the "my threads" list: bob replied, so the thread is his too
  const sets = await room.createThreadsTimelineSets();
  need(sets && sets[1], "no participated thread list");
  await room.fetchRoomThreadList(sdk.ThreadFilterType.My);
  const myRoots = sets[1].getLiveTimeline().getEvents().map((e) => e.getId());
  need(myRoots.includes(root), "participated list: " + JSON.stringify(myRoots));
  out.participated = true;

  // a live reply in the thread reaches the thread
  await alice.sendEvent(roomId, root, "m.room.message",
    text("alice replies", { "m.relates_to": { rel_type: "m.thread", event_id: root } }));
  await until(bob, "live reply", () => thread.length === 4 && thread.replyToEvent?.getContent().body === "alice replies");
  out.live_length = thread.length;

  bob.stopClient();
  out.ok = true;
  console.log(JSON.stringify(out));
}

main().then(() => process.exit(0), (e) => { console.error(String(e && e.stack || e)); process.exit(1); });
