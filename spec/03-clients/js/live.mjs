// matrix-js-sdk's own sync loop (startClient) against a loom server
// (spec/03-clients/jssdk_live_spec.lua). Usage: node live.mjs BASE_URL
// Alice runs the client; Bob acts through plain requests. After PREPARED,
// Alice's client must see, live: a redaction (room v11: the SDK reads the
// top-level `redacts`), Bob typing, Bob's read receipt, her own account
// data, and a to-device message from Bob.
// Prints one JSON line with what it saw; exits 1 on the first failure.
import * as sdk from "matrix-js-sdk";

const base = process.argv[2];
const need = (cond, what) => { if (!cond) throw new Error("js-sdk live scenario failed: " + what); };
const quiet = { log() {}, info() {}, warn() {}, error() {}, debug() {}, trace() {}, getChild() { return quiet; } };
const enc = encodeURIComponent;

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
  return sdk.createClient({ baseUrl: base, accessToken: res.access_token, userId: res.user_id,
    deviceId: res.device_id, logger: quiet });
}

// Resolves with the emitted arguments once `check(...args)` is true; rejects
// after `ms` naming what was awaited.
function waitFor(emitter, name, check, what, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { emitter.off(name, fn); reject(new Error("timed out waiting for " + what)); }, ms);
    function fn(...args) {
      let ok = false;
      try { ok = check(...args); } catch (e) { ok = false; }
      if (ok) { clearTimeout(timer); emitter.off(name, fn); resolve(args); }
    }
    emitter.on(name, fn);
  });
}

async function main() {
  const out = {};
  const alice = await register("livealice");
  const bob = await register("livebob");
  const { room_id: roomId } = await alice.createRoom({ name: "live", preset: "private_chat", room_version: "11" });
  await alice.invite(roomId, bob.getUserId());
  await bob.joinRoom(roomId);
  const bobSend = async (body) => (await bob.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body })).event_id;

  const prepared = waitFor(alice, sdk.ClientEvent.Sync, (state) => state === "PREPARED", "PREPARED", 20000);
  alice.startClient({ initialSyncLimit: 10 });
  await prepared;
  const room = alice.getRoom(roomId);
  need(room, "room not in the client after the initial sync");
  need(room.getVersion() === "11", "room version " + room.getVersion());

  // 1. a message, then its redaction, both arriving live
  let seen = waitFor(alice, sdk.RoomEvent.Timeline, (ev) => ev.getContent().body === "to be redacted", "bob's message");
  const doomed = await bobSend("to be redacted");
  await seen;
  const redacted = waitFor(room, sdk.RoomEvent.Redaction, (ev) => ev.event.redacts === doomed, "the redaction");
  await bob.http.authedRequest(sdk.Method.Put,
    `/rooms/${enc(roomId)}/redact/${enc(doomed)}/r1`, undefined, { reason: "testing" });
  const [redaction] = await redacted;
  need(redaction.getContent().redacts === doomed, "v11 redaction has no content.redacts");
  const target = room.findEventById(doomed);
  need(target && target.isRedacted(), "the message is not redacted in the client");
  need(target.getContent().body === undefined, "the redacted message kept its body");
  out.redaction = true;

  // 2. typing: Bob starts typing, Alice's client shows it, then stops
  const typing = waitFor(alice, sdk.RoomMemberEvent.Typing,
    (ev, member) => member.userId === bob.getUserId() && member.typing === true, "bob typing");
  await bob.sendTyping(roomId, true, 30000);
  await typing;
  const stopped = waitFor(alice, sdk.RoomMemberEvent.Typing,
    (ev, member) => member.userId === bob.getUserId() && member.typing === false, "bob stopping typing");
  await bob.sendTyping(roomId, false);
  await stopped;
  out.typing = true;

  // 3. a read receipt: Bob reads Alice's message
  seen = waitFor(alice, sdk.RoomEvent.Timeline, (ev) => ev.getContent().body === "read me", "alice's message");
  const { event_id: readMe } = await alice.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "read me" });
  await seen;
  const receipt = waitFor(room, sdk.RoomEvent.Receipt, () => room.getUsersReadUpTo(room.findEventById(readMe))
    .includes(bob.getUserId()), "bob's receipt");
  await bob.http.authedRequest(sdk.Method.Post, `/rooms/${enc(roomId)}/receipt/m.read/${enc(readMe)}`, undefined, {});
  await receipt;
  const receipts = room.getReceiptsForEvent(room.findEventById(readMe));
  need(receipts.some((r) => r.userId === bob.getUserId() && r.type === "m.read"), "getReceiptsForEvent");
  out.receipt = true;

  // 4. account data set through the API reaches the client through /sync
  const acct = waitFor(alice, sdk.ClientEvent.AccountData,
    (ev) => ev.getType() === "org.loom.test" && ev.getContent().n === 42, "account data");
  await alice.http.authedRequest(sdk.Method.Put,
    `/user/${enc(alice.getUserId())}/account_data/org.loom.test`, undefined, { n: 42 });
  await acct;
  need(alice.getAccountData("org.loom.test").getContent().n === 42, "getAccountData");
  out.account_data = true;

  // 5. a to-device message from Bob to Alice's device
  const todev = waitFor(alice, sdk.ClientEvent.ToDeviceEvent,
    (ev) => ev.getType() === "org.loom.ping" && ev.getSender() === bob.getUserId(), "the to-device message");
  const messages = { [alice.getUserId()]: { [alice.getDeviceId()]: { ping: 1 } } };
  await bob.http.authedRequest(sdk.Method.Put, "/sendToDevice/org.loom.ping/td1", undefined, { messages });
  const [ping] = await todev;
  need(ping.getContent().ping === 1, "to-device content");
  out.to_device = true;

  alice.stopClient();
  out.ok = true;
  console.log(JSON.stringify(out));
}

main().then(() => process.exit(0), (e) => { console.error(String(e && e.stack || e)); process.exit(1); });
