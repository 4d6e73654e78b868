// matrix-js-sdk's Rust crypto (initRustCrypto, the WebAssembly build from
// the npm package) against a loom server (spec/03-clients/jssdk_crypto_spec.lua).
// Usage: node crypto.mjs BASE_URL messages|cross-signing
//   messages: two users, each with a Rust crypto client, in a room with
//     m.room.encryption; each sees the other's device through /keys/query,
//     each sends an encrypted message and the other decrypts it.
//   late-devices: after a first exchange, Bob logs in a second device
//     (Alice's client learns of it through /sync's device_lists.changed and
//     shares her next session with it), the new device sends too, then
//     logs out (and Alice's client drops it); Alice
//     backs her room keys up (/room_keys) and a new device of hers restores
//     the backup and decrypts the history.
//   verification: Alice and Bob bootstrap cross-signing, verify each other
//     with SAS (m.key.verification.* in their encrypted room), and each
//     uploads a signature of the other's master key (/keys/signatures/upload)
//     that /keys/query then serves.
//   lazy-members: a client with lazyLoadMembers shares its keys with
//     members whose joins it has not seen (it fetches /members first).
//   secret-storage: cross-signing and backup keys kept in secret storage
//     (account data) by one device and taken from there by a second one,
//     which signs itself; the first device then trusts it.
//   cross-signing: bootstrapCrossSigning with password UIA, then a new key
//     backup version (resetKeyBackup) that the client finds and trusts.
// Prints one JSON line with what it saw; exits 1 on the first failure.
import * as sdk from "matrix-js-sdk";

const base = process.argv[2];
const mode = process.argv[3] || "messages";
const need = (cond, what) => { if (!cond) throw new Error("js-sdk crypto scenario failed: " + what); };
const quiet = { log() {}, info() {}, warn() {}, error() {}, debug() {}, trace() {}, getChild() { return quiet; } };

async function register(username, { login = false, callbacks = undefined } = {}) {
  const password = username + "-password";
  const c = sdk.createClient({ baseUrl: base, logger: quiet });
  let res;
  if (login) {
    res = await c.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: username },
      password });
  } else {
    try {
      res = await c.registerRequest({ username, password });
    } catch (e) {
      need(e.httpStatus === 401 && e.data && e.data.session, "register: expected 401 with a session, got " + e);
      res = await c.registerRequest({ username, password,
        auth: { type: "m.login.dummy", session: e.data.session } });
    }
  }
  need(res.access_token && res.user_id && res.device_id, "register " + username);
  const client = sdk.createClient({ baseUrl: base, accessToken: res.access_token, userId: res.user_id,
    deviceId: res.device_id, logger: quiet, cryptoCallbacks: callbacks });
  await client.initRustCrypto({ useIndexedDB: false });
  need(client.getCrypto(), "no crypto after initRustCrypto");
  client.password = password;
  return client;
}

function waitFor(emitter, name, check, what, ms = 20000) {
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

async function until(check, what, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function start(client, opts = {}) {
  const prepared = waitFor(client, sdk.ClientEvent.Sync, (state) => state === "PREPARED",
    client.getUserId() + " PREPARED");
  client.startClient({ initialSyncLimit: 10, ...opts });
  await prepared;
}

// The client's own device keys were uploaded: /keys/query (through the
// client's crypto) lists the other user's device with its keys.
async function seesDevice(client, other) {
  const map = await client.getCrypto().getUserDeviceInfo([other.getUserId()], true);
  const devices = map.get(other.getUserId());
  const device = devices && devices.get(other.getDeviceId());
  return device && device.getIdentityKey() && device.getFingerprint() ? device : null;
}

// The receiver's client gets the sender's message and decrypts it.
async function exchange(sender, receiver, roomId, body) {
  const got = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out waiting for " + body)), 30000);
    const fn = async (ev, room) => {
      if (!room || room.roomId !== roomId || ev.getSender() !== sender.getUserId()) return;
      if (ev.getWireType() !== "m.room.encrypted") return;
      await receiver.decryptEventIfNeeded(ev);
      if (ev.isBeingDecrypted()) await new Promise((r) => ev.once(sdk.MatrixEventEvent.Decrypted, r));
      if (ev.getContent().body !== body) return;
      clearTimeout(timer);
      receiver.off(sdk.RoomEvent.Timeline, fn);
      resolve(ev);
    };
    receiver.on(sdk.RoomEvent.Timeline, fn);
  });
  const { event_id: eventId } = await sender.sendMessage(roomId, { msgtype: "m.text", body });
  const ev = await got;
  need(ev.getId() === eventId, "decrypted event id");
  need(ev.isEncrypted() && !ev.isDecryptionFailure(), "not a decrypted encrypted event");
  need(ev.getType() === "m.room.message", "clear type " + ev.getType());
  // the server saw only ciphertext
  const raw = await receiver.fetchRoomEvent(roomId, eventId);
  need(raw.type === "m.room.encrypted" && raw.content.algorithm === "m.megolm.v1.aes-sha2"
    && raw.content.ciphertext && raw.content.body === undefined, "the server has the clear text");
}

// Two users with Rust crypto in a new encrypted room: [alice, bob, roomId].
async function encryptedRoom(a, b) {
  const alice = await register(a);
  const bob = await register(b);
  await start(alice);
  await start(bob);
  const { room_id: roomId } = await alice.createRoom({ name: "secret", preset: "private_chat",
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }] });
  await alice.invite(roomId, bob.getUserId());
  await until(() => bob.getRoom(roomId), "bob's invite");
  await bob.joinRoom(roomId);
  await until(() => alice.getRoom(roomId) && alice.getRoom(roomId).getJoinedMemberCount() === 2, "bob's join");
  await until(() => alice.getCrypto().isEncryptionEnabledInRoom(roomId), "alice: encryption on");
  await until(() => bob.getCrypto().isEncryptionEnabledInRoom(roomId), "bob: encryption on");
  return [alice, bob, roomId];
}

async function messages() {
  const out = {};
  const [alice, bob, roomId] = await encryptedRoom("cryptoalice", "cryptobob");
  await until(() => seesDevice(alice, bob), "alice seeing bob's device");
  await until(() => seesDevice(bob, alice), "bob seeing alice's device");
  out.devices = true;

  await exchange(alice, bob, roomId, "hello bob, from alice");
  out.alice_to_bob = true;
  await exchange(bob, alice, roomId, "hello alice, from bob");
  out.bob_to_alice = true;
  // a second message on each side reuses the megolm sessions
  await exchange(alice, bob, roomId, "second from alice");
  await exchange(bob, alice, roomId, "second from bob");
  out.again = true;

  alice.stopClient();
  bob.stopClient();
  out.ok = true;
  return out;
}

// The encrypted event `eventId` as the client sees it in its timeline,
// decrypted (retrying decryption, e.g. after a key backup restore).
async function decryptedInTimeline(client, roomId, eventId, body) {
  await until(async () => {
    const ev = client.getRoom(roomId) && client.getRoom(roomId).findEventById(eventId);
    if (!ev) return false;
    if (ev.isDecryptionFailure()) await client.decryptEventIfNeeded(ev, { isRetry: true });
    return ev.isEncrypted() && !ev.isDecryptionFailure() && ev.getContent().body === body;
  }, client.getDeviceId() + " decrypting " + body);
}

async function lateDevices() {
  const out = {};
  const [alice, bob, roomId] = await encryptedRoom("latealice", "latebob");
  await exchange(alice, bob, roomId, "before the new device");
  const first = (await alice.getRoom(roomId).getLiveTimeline().getEvents())
    .find((ev) => ev.getContent().body === "before the new device").getId();

  // Bob's second device: Alice's client hears of it from /sync
  const bob2 = await register("latebob", { login: true });
  await start(bob2);
  await until(() => seesDevice(alice, bob2), "alice seeing bob's new device");
  await exchange(alice, bob2, roomId, "to both of bob's devices");
  await exchange(bob2, alice, roomId, "from bob's new device");
  await exchange(alice, bob, roomId, "bob's first device still decrypts");
  out.new_device = true;

  // Bob's second device logs out: Alice's client hears of that too
  bob2.stopClient();
  await bob2.logout(true);
  await until(async () => !(await seesDevice(alice, bob2)), "alice no longer seeing bob's logged-out device");
  await exchange(alice, bob, roomId, "after the logout");
  out.logged_out = true;

  // Alice backs her keys up; her own new device restores them
  const crypto = alice.getCrypto();
  await crypto.resetKeyBackup();
  const check = await crypto.checkKeyBackupAndEnable();
  need(check && check.trustInfo.trusted, "alice's backup is not trusted");
  const version = check.backupInfo.version;
  await until(async () => {
    const keys = await alice.http.authedRequest(sdk.Method.Get, "/room_keys/keys", { version });
    const room = keys.rooms && keys.rooms[roomId];
    return room && Object.keys(room.sessions).length >= 2;
  }, "alice's room keys in the backup");
  const key = await crypto.getSessionBackupPrivateKey();
  need(key, "no backup private key on alice's device");
  const alice2 = await register("latealice", { login: true });
  await start(alice2);
  await until(() => alice2.getRoom(roomId), "the room on alice's new device");
  await alice2.getCrypto().storeSessionBackupPrivateKey(key, version);
  const check2 = await alice2.getCrypto().checkKeyBackupAndEnable();
  need(check2 && check2.backupInfo.version === version, "alice's new device does not find the backup");
  const restored = await alice2.getCrypto().restoreKeyBackup();
  need(restored.imported >= 2, "restored " + JSON.stringify(restored));
  await decryptedInTimeline(alice2, roomId, first, "before the new device");
  out.backup_restore = true;

  for (const c of [alice, bob, alice2]) c.stopClient();
  out.ok = true;
  return out;
}

async function bootstrap(client) {
  await client.getCrypto().bootstrapCrossSigning({
    authUploadDeviceSigningKeys: async (makeRequest) => {
      await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: client.getUserId() },
        password: client.password });
    },
  });
  need(await client.getCrypto().isCrossSigningReady(), client.getUserId() + ": cross-signing not ready");
}

async function verification() {
  const out = {};
  const [alice, bob, roomId] = await encryptedRoom("verifyalice", "verifybob");
  await bootstrap(alice);
  await bootstrap(bob);
  await until(() => alice.getCrypto().userHasCrossSigningKeys(bob.getUserId(), true), "alice seeing bob's keys");
  await until(() => bob.getCrypto().userHasCrossSigningKeys(alice.getUserId(), true), "bob seeing alice's keys");
  need(!(await alice.getCrypto().getUserVerificationStatus(bob.getUserId())).isCrossSigningVerified(),
    "bob verified before the verification");

  const received = waitFor(bob, sdk.Crypto.CryptoEvent.VerificationRequestReceived, () => true,
    "bob receiving the verification request");
  const aliceReq = await alice.getCrypto().requestVerificationDM(bob.getUserId(), roomId);
  const [bobReq] = await received;
  need(bobReq.otherUserId === alice.getUserId(), "request from " + bobReq.otherUserId);
  await bobReq.accept();
  await until(() => aliceReq.phase === sdk.Crypto.VerificationPhase.Ready, "the request being ready");
  const shown = [];
  // a verifier may show its SAS before the listener is attached (Bob's side
  // starts on its own when Alice's start arrives): take it either way, once
  const confirm = (verifier) => {
    let done = false;
    const go = (sas) => {
      if (done) return;
      done = true;
      shown.push(sas.sas.emoji.map((e) => e[1]).join(" "));
      sas.confirm();
    };
    verifier.on(sdk.Crypto.VerifierEvent.ShowSas, go);
    const already = verifier.getShowSasCallbacks();
    if (already) go(already);
  };
  const aliceVerifier = await aliceReq.startVerification("m.sas.v1");
  confirm(aliceVerifier);
  const aliceDone = aliceVerifier.verify();
  await until(() => bobReq.verifier, "bob's side of the SAS");
  confirm(bobReq.verifier);
  await Promise.all([aliceDone, bobReq.verifier.verify()]);
  need(shown.length === 2 && shown[0] === shown[1], "the two sides showed " + JSON.stringify(shown));
  out.sas = true;

  for (const [c, other] of [[alice, bob], [bob, alice]]) {
    await until(async () => (await c.getCrypto().getUserVerificationStatus(other.getUserId())).isCrossSigningVerified(),
      c.getUserId() + " trusting " + other.getUserId());
    // the server holds the signature: c's user-signing key signed the other's master key
    const q = await c.http.authedRequest(sdk.Method.Post, "/keys/query", undefined,
      { device_keys: { [other.getUserId()]: [] } });
    const master = q.master_keys[other.getUserId()];
    const usk = q.user_signing_keys[c.getUserId()];
    need(!usk, "the other's user-signing key is served to " + c.getUserId());
    const own = await c.http.authedRequest(sdk.Method.Post, "/keys/query", undefined,
      { device_keys: { [c.getUserId()]: [] } });
    const uskId = Object.keys(own.user_signing_keys[c.getUserId()].keys)[0];
    need(master.signatures[c.getUserId()] && master.signatures[c.getUserId()][uskId],
      "no signature by " + uskId + " on the master key: " + JSON.stringify(master.signatures));
  }
  out.signatures = true;

  alice.stopClient();
  bob.stopClient();
  out.ok = true;
  return out;
}

// Members loaded lazily: Alice's client starts with lazyLoadMembers after
// Bob and Carol joined and enough traffic to push their joins out of the
// timeline; to share her keys it must fetch the members (/members with `at`
// and `not_membership`), and both decrypt.
async function lazyMembers() {
  const out = {};
  const [alice, bob, roomId] = await encryptedRoom("lazyalice", "lazybob");
  const carol = await register("lazycarol");
  await start(carol);
  await alice.invite(roomId, carol.getUserId());
  await until(() => carol.getRoom(roomId), "carol's invite");
  await carol.joinRoom(roomId);
  await until(() => carol.getCrypto().isEncryptionEnabledInRoom(roomId), "carol: encryption on");
  for (let i = 0; i < 5; i++) await exchange(bob, carol, roomId, "filler " + i);
  alice.stopClient();

  const lazy = await register("lazyalice", { login: true });
  await start(lazy, { lazyLoadMembers: true, initialSyncLimit: 2 });
  const room = lazy.getRoom(roomId);
  need(room, "the room on the lazy client");
  need(!room.getMember(carol.getUserId()), "carol's membership was not lazily left out");
  await until(() => lazy.getCrypto().isEncryptionEnabledInRoom(roomId), "lazy: encryption on");
  await exchange(lazy, carol, roomId, "to carol, members loaded lazily");
  need(room.getMember(carol.getUserId()), "the lazy client never loaded carol's membership");
  await exchange(lazy, bob, roomId, "to bob, members loaded lazily");
  await exchange(carol, lazy, roomId, "from carol to the lazy client");
  out.lazy_members = true;

  for (const c of [lazy, bob, carol]) c.stopClient();
  out.ok = true;
  return out;
}

// Secret storage: Dave's first device keeps the cross-signing keys and the
// backup key in account data (bootstrapSecretStorage with a recovery key);
// his second device takes them from there, signs itself, and the first
// device hears of the signature (/sync device_lists) and trusts it.
async function secretStorage() {
  const out = {};
  let recovery = null;
  const callbacks = {
    getSecretStorageKey: async ({ keys }) => (recovery ? [Object.keys(keys)[0], recovery.privateKey] : null),
  };
  const dave = await register("cryptodave", { callbacks });
  await start(dave);
  await bootstrap(dave);
  const crypto = dave.getCrypto();
  await crypto.bootstrapSecretStorage({
    createSecretStorageKey: async () => { recovery = await crypto.createRecoveryKeyFromPassphrase(); return recovery; },
    setupNewSecretStorage: true,
    setupNewKeyBackup: true,
  });
  need(await crypto.isSecretStorageReady(), "secret storage not ready");
  const data = (type) => dave.http.authedRequest(sdk.Method.Get,
    `/user/${encodeURIComponent(dave.getUserId())}/account_data/${type}`);
  const { key: keyId } = await data("m.secret_storage.default_key");
  need(keyId, "no default secret storage key in account data");
  for (const type of ["m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing",
    "m.megolm_backup.v1"]) {
    const secret = await data(type);
    need(secret.encrypted && secret.encrypted[keyId] && secret.encrypted[keyId].ciphertext, "no secret " + type);
  }
  out.secret_storage = true;

  const dave2 = await register("cryptodave", { login: true, callbacks });
  await start(dave2);
  const crypto2 = dave2.getCrypto();
  // the public keys first (/keys/query): the private ones are checked against them
  await until(() => crypto2.userHasCrossSigningKeys(dave.getUserId(), true), "the second device seeing the keys");
  await crypto2.bootstrapCrossSigning({});
  need(await crypto2.isCrossSigningReady(), "the second device did not take the cross-signing keys");
  const status = await crypto2.getCrossSigningStatus();
  need(status.privateKeysCachedLocally.masterKey, "no master key on the second device");
  await until(async () => {
    const v = await crypto.getDeviceVerificationStatus(dave.getUserId(), dave2.getDeviceId());
    return v && v.crossSigningVerified;
  }, "the first device trusting the second");
  await crypto2.loadSessionBackupPrivateKeyFromSecretStorage();
  const check = await crypto2.checkKeyBackupAndEnable();
  need(check && check.trustInfo.trusted && check.trustInfo.matchesDecryptionKey,
    "the second device's backup check " + JSON.stringify(check && check.trustInfo));
  out.recovered = true;

  dave.stopClient();
  dave2.stopClient();
  out.ok = true;
  return out;
}

async function crossSigning() {
  const out = {};
  const carol = await register("cryptocarol");
  await start(carol);
  const crypto = carol.getCrypto();
  need(!(await crypto.isCrossSigningReady()), "cross-signing ready before the bootstrap");
  let asked = 0;
  await crypto.bootstrapCrossSigning({
    authUploadDeviceSigningKeys: async (makeRequest) => {
      asked++;
      await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: carol.getUserId() },
        password: carol.password });
    },
  });
  need(asked === 1, "the upload asked for auth " + asked + " times");
  const status = await crypto.getCrossSigningStatus();
  need(status.publicKeysOnDevice && status.privateKeysCachedLocally.masterKey
    && status.privateKeysCachedLocally.selfSigningKey && status.privateKeysCachedLocally.userSigningKey,
  "cross-signing status " + JSON.stringify(status));
  need(await crypto.isCrossSigningReady(), "cross-signing not ready");
  // the server serves the keys: the device is signed by the self-signing key
  const verification = await crypto.getDeviceVerificationStatus(carol.getUserId(), carol.getDeviceId());
  need(verification && verification.crossSigningVerified, "own device not cross-signed");
  out.cross_signing = true;

  await crypto.resetKeyBackup();
  // resetKeyBackup starts the check without waiting for it: wait here
  const check = await crypto.checkKeyBackupAndEnable();
  need(check && check.trustInfo.trusted, "the new backup is not trusted " + JSON.stringify(check && check.trustInfo));
  const version = await crypto.getActiveSessionBackupVersion();
  need(version, "no active backup version");
  const info = await crypto.getKeyBackupInfo();
  need(info && info.version === version && info.algorithm === "m.megolm_backup.v1.curve25519-aes-sha2",
    "backup info " + JSON.stringify(info));
  const trust = await crypto.isKeyBackupTrusted(info);
  need(trust.trusted && trust.matchesDecryptionKey, "backup trust " + JSON.stringify(trust));
  out.key_backup = true;

  carol.stopClient();
  out.ok = true;
  return out;
}

const run = { "messages": messages, "late-devices": lateDevices, "verification": verification,
  "lazy-members": lazyMembers, "secret-storage": secretStorage, "cross-signing": crossSigning }[mode];
// a step that never finishes (a lost event) fails the run with a message
// instead of hanging until the spec's own limit
setTimeout(() => { console.error("crypto.mjs " + mode + ": no result after 150 s"); process.exit(1); }, 150000)
  .unref();
run().then((out) => { console.log(JSON.stringify(out)); process.exit(0); },
  (e) => { console.error(String(e && e.stack || e)); process.exit(1); });
