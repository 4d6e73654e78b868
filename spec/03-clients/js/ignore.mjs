// matrix-js-sdk against loom: room summaries and ignored users
// (spec/03-clients/jssdk_ignore_spec.lua). Usage: node ignore.mjs BASE_URL
// With lazy-loaded members the client names an unnamed room from the
// summary's heroes and their member events; once alice ignores bob, bob's
// messages and invites never reach her client while carol's do.
// Prints one JSON line with what it saw; exits 1 on the first failure.
import * as sdk from "matrix-js-sdk";

const base = process.argv[2];
const need = (cond, what) => { if (!cond) throw new Error("js-sdk ignore scenario failed: " + what); };
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
  return sdk.createClient({ baseUrl: base, accessToken: res.access_token, userId: res.user_id,
    deviceId: res.device_id, logger: quiet });
}

// Resolve once check() holds, re-checked on every sync of the client.
function until(client, what, check, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { client.off(sdk.ClientEvent.Sync, onSync); reject(new Error("timed out: " + what)); },
      ms);
    const onSync = () => {
      if (check()) { clearTimeout(timer); client.off(sdk.ClientEvent.Sync, onSync); resolve(); }
    };
    client.on(sdk.ClientEvent.Sync, onSync);
    onSync();
  });
}

const bodies = (room) => room.getLiveTimeline().getEvents()
  .filter((e) => e.getType() === "m.room.message").map((e) => e.getContent().body);

async function main() {
  const out = {};
  const alice = await register("ignalice");
  const bob = await register("ignbob");
  const carol = await register("igncarol");
  await bob.setDisplayName("Bob Builder");

  const { room_id: roomId } = await alice.createRoom({ preset: "public_chat" });
  await bob.joinRoom(roomId);
  await carol.joinRoom(roomId);
  await bob.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "bob before" });
  await alice.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "alice last" });

  // lazy-loaded members and a one-event timeline: bob's member event comes
  // only as a hero's
  alice.startClient({ lazyLoadMembers: true, initialSyncLimit: 1 });
  await until(alice, "PREPARED", () => alice.isInitialSyncComplete());
  const room = alice.getRoom(roomId);
  need(room, "room missing");
  out.room_name = room.name;
  need(room.name.includes("Bob Builder"), "room name from heroes: " + room.name);
  need(room.getJoinedMemberCount() === 3, "joined count " + room.getJoinedMemberCount());

  await alice.setIgnoredUsers([bob.getUserId()]);
  await until(alice, "ignore list synced", () => alice.isUserIgnored(bob.getUserId()));

  await bob.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "bob while ignored" });
  await carol.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "carol after" });
  await until(alice, "carol's message", () => bodies(room).includes("carol after"));
  need(!bodies(room).includes("bob while ignored"), "ignored message shown: " + JSON.stringify(bodies(room)));
  out.timeline = bodies(room);

  const { room_id: fromBob } = await bob.createRoom({ preset: "private_chat", invite: [alice.getUserId()] });
  const { room_id: fromCarol } = await carol.createRoom({ preset: "private_chat", invite: [alice.getUserId()] });
  await until(alice, "carol's invite", () => alice.getRoom(fromCarol)?.getMyMembership() === "invite");
  need(!alice.getRoom(fromBob), "invite from the ignored user shown");
  out.invite_hidden = true;

  alice.stopClient();
  out.ok = true;
  console.log(JSON.stringify(out));
}

main().then(() => process.exit(0), (e) => { console.error(String(e && e.stack || e)); process.exit(1); });
