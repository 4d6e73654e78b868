"""matrix-nio's own end-to-end encryption (olm through Debian's python3-olm)
against loom (spec/03-clients/nio_crypto_spec.lua).

Usage: /usr/bin/python3 nio_crypto.py BASE_URL STORE_DIR
Alice and Bob, each an AsyncClient with a key store, upload their device
keys, meet in a room with m.room.encryption, query each other's keys and
verify each other's device, then each sends a megolm message (the room key
goes over olm to-device messages after a one-time key claim) that the other
decrypts from /sync. Prints one JSON object with what it saw; exits 1 with a
message on the first thing that goes wrong.
"""
import asyncio
import json
import os
import sys

import nio


def need(cond, what):
    if not cond:
        raise SystemExit("nio crypto scenario failed: " + what)


async def register(base, store, name):
    path = os.path.join(store, name)
    os.makedirs(path, exist_ok=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    c = nio.AsyncClient(base, name, store_path=path, config=config)
    r = await c.register(name, name + "-password", "nio-" + name)
    need(isinstance(r, nio.RegisterResponse), "register %s: %r" % (name, r))
    need(c.olm is not None, "no olm machine for " + name)
    need(c.should_upload_keys, name + " has no keys to upload")
    r = await c.keys_upload()
    need(isinstance(r, nio.KeysUploadResponse), "keys_upload %s: %r" % (name, r))
    need(r.signed_curve25519_count > 0, "the server counts no one-time keys: %r" % (r,))
    return c


async def login(base, store, name, device):
    path = os.path.join(store, device)
    os.makedirs(path, exist_ok=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    c = nio.AsyncClient(base, name, store_path=path, config=config)
    r = await c.login(name + "-password", device_name=device)
    need(isinstance(r, nio.LoginResponse), "login %s: %r" % (device, r))
    r = await c.keys_upload()
    need(isinstance(r, nio.KeysUploadResponse), "keys_upload %s: %r" % (device, r))
    return c


async def sync(c):
    r = await c.sync(timeout=0, since=c.next_batch, full_state=c.next_batch is None)
    need(isinstance(r, nio.SyncResponse), "sync %s: %r" % (c.user_id, r))
    return r


# The other's device, once /keys/query names it with its keys; verified.
async def meet(c, other):
    if c.should_query_keys:
        r = await c.keys_query()
        need(isinstance(r, nio.KeysQueryResponse), "keys_query %s: %r" % (c.user_id, r))
    devices = c.device_store.active_user_devices(other.user_id)
    device = next((d for d in devices if d.id == other.device_id), None)
    need(device is not None, "%s does not see %s's device" % (c.user_id, other.user_id))
    need(device.ed25519 == other.olm.account.identity_keys["ed25519"], "wrong ed25519 key")
    need(device.curve25519 == other.olm.account.identity_keys["curve25519"], "wrong curve25519 key")
    c.verify_device(device)
    return device


async def exchange(sender, receiver, room_id, body):
    r = await sender.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    need(isinstance(r, nio.RoomSendResponse), "room_send %s: %r" % (sender.user_id, r))
    event_id = r.event_id
    seen = []
    for _ in range(10):
        r = await sync(receiver)
        room = r.rooms.join.get(room_id)
        for e in (room.timeline.events if room else []):
            seen.append(e)
            if e.event_id == event_id:
                need(isinstance(e, nio.RoomMessageText), "%s could not decrypt: %r" % (receiver.user_id, e))
                need(e.decrypted and e.body == body, "decrypted to %r" % (e,))
                need(e.verified, "the sender's device is not verified: %r" % (e,))
                return
        await asyncio.sleep(0.1)
    need(False, "%s never saw %s: %r" % (receiver.user_id, event_id, seen))


async def main(base, store):
    out = {}
    alice = await register(base, store, "nioalice")
    bob = await register(base, store, "niobob")
    encryption = {"type": "m.room.encryption", "state_key": "",
                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
    r = await alice.room_create(name="nio secret", initial_state=[encryption])
    need(isinstance(r, nio.RoomCreateResponse), "room_create: %r" % (r,))
    room_id = r.room_id
    r = await alice.room_invite(room_id, bob.user_id)
    need(isinstance(r, nio.RoomInviteResponse), "invite: %r" % (r,))
    await sync(bob)
    r = await bob.join(room_id)
    need(isinstance(r, nio.JoinResponse), "join: %r" % (r,))
    await sync(alice)
    await sync(bob)
    need(alice.rooms[room_id].encrypted and bob.rooms[room_id].encrypted, "the room is not encrypted")

    await meet(alice, bob)
    await meet(bob, alice)
    out["devices"] = True

    await exchange(alice, bob, room_id, "hello bob, from nio alice")
    out["alice_to_bob"] = True
    await exchange(bob, alice, room_id, "hello alice, from nio bob")
    out["bob_to_alice"] = True
    await exchange(alice, bob, room_id, "second from alice")
    await exchange(bob, alice, room_id, "second from bob")
    out["again"] = True

    # Bob logs in a second device: Alice hears of it through /sync's
    # device_lists.changed, queries and verifies it, and her next session
    # reaches it too
    bob2 = await login(base, store, "niobob", "niobob2")
    await sync(bob2)
    r = await sync(alice)
    need(bob.user_id in r.device_list.changed, "alice's sync misses bob's new device: %r" % (r.device_list,))
    r = await sync(bob)
    need(bob.user_id in r.device_list.changed, "bob's sync misses his own new device: %r" % (r.device_list,))
    await meet(alice, bob2)
    await meet(bob2, alice)
    await meet(bob, bob2)
    await meet(bob2, bob)
    await exchange(alice, bob2, room_id, "to bob's new device")
    await exchange(alice, bob, room_id, "to bob's first device")
    await exchange(bob2, alice, room_id, "from bob's new device")
    out["new_device"] = True

    for c in (alice, bob, bob2):
        await c.close()

    out["ok"] = True
    print(json.dumps(out))


asyncio.run(main(sys.argv[1], sys.argv[2]))
