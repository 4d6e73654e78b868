"""A scripted matrix-nio session against a loom server (spec/03-clients/nio_spec.lua).

Usage: /usr/bin/python3 nio_client.py BASE_URL
Prints one JSON object with what it saw; exits 1 with a message on the first
thing that goes wrong.
"""
import asyncio
import json
import sys

import nio


def need(cond, what):
    if not cond:
        raise SystemExit("nio scenario failed: " + what)


async def main(base):
    out = {}
    alice = nio.AsyncClient(base, "alice")
    r = await alice.register("alice", "alice-password", "nio-alice")
    need(isinstance(r, nio.RegisterResponse), "register alice: %r" % (r,))
    await alice.close()

    alice = nio.AsyncClient(base, "@alice:localhost")
    r = await alice.login("alice-password", device_name="nio")
    need(isinstance(r, nio.LoginResponse), "login: %r" % (r,))
    out["user_id"] = r.user_id

    r = await alice.room_create(name="nio room", topic="talking")
    need(isinstance(r, nio.RoomCreateResponse), "room_create: %r" % (r,))
    room_id = r.room_id
    out["room_id"] = room_id

    sent = []
    for i in range(30):
        r = await alice.room_send(room_id, "m.room.message",
                                  {"msgtype": "m.text", "body": "message %d" % i})
        need(isinstance(r, nio.RoomSendResponse), "room_send %d: %r" % (i, r))
        sent.append(r.event_id)

    r = await alice.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 5}}})
    need(isinstance(r, nio.SyncResponse), "sync: %r" % (r,))
    joined = r.rooms.join.get(room_id)
    need(joined is not None, "room not in sync")
    tl = [e.event_id for e in joined.timeline.events]
    need(tl == sent[-5:], "sync timeline is not the last 5 messages: %r" % (tl,))
    need(joined.timeline.limited, "timeline not limited")
    prev = joined.timeline.prev_batch
    need(prev, "no prev_batch")

    # page back to the start of the room
    back, token, pages = [], prev, 0
    while token and pages < 50:
        r = await alice.room_messages(room_id, start=token, limit=7,
                                      direction=nio.MessageDirection.back)
        need(isinstance(r, nio.RoomMessagesResponse), "room_messages: %r" % (r,))
        back.extend(e.event_id for e in r.chunk if getattr(e, "event_id", None))
        pages += 1
        if not r.chunk or not r.end:
            break
        token = r.end
    msgs_back = [e for e in back if e in sent]
    need(msgs_back == list(reversed(sent[:-5])), "paging back missed messages: %d of 25" % len(msgs_back))
    out["paged_events"] = len(back)
    out["pages"] = pages

    r = await alice.room_context(room_id, sent[10], limit=4)
    need(isinstance(r, nio.RoomContextResponse), "room_context: %r" % (r,))
    need(r.event.event_id == sent[10], "context anchor")
    before = [e.event_id for e in r.events_before]
    after = [e.event_id for e in r.events_after]
    need(before[:2] == [sent[9], sent[8]], "context before: %r" % (before,))
    need(after[:2] == [sent[11], sent[12]], "context after: %r" % (after,))

    bob = nio.AsyncClient(base, "bob")
    r = await bob.register("bob", "bob-password", "nio-bob")
    need(isinstance(r, nio.RegisterResponse), "register bob: %r" % (r,))
    r = await alice.room_invite(room_id, "@bob:localhost")
    need(isinstance(r, nio.RoomInviteResponse), "invite: %r" % (r,))
    r = await bob.sync(timeout=0)
    need(room_id in r.rooms.invite, "bob's sync has no invite")
    r = await bob.join(room_id)
    need(isinstance(r, nio.JoinResponse), "join: %r" % (r,))
    r = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi from bob"})
    need(isinstance(r, nio.RoomSendResponse), "bob send: %r" % (r,))
    r = await alice.sync(timeout=0, since=alice.next_batch)
    need(room_id in r.rooms.join, "alice's incremental sync misses the room")
    bodies = [getattr(e, "body", None) for e in r.rooms.join[room_id].timeline.events]
    need("hi from bob" in bodies, "alice did not see bob's message: %r" % (bodies,))
    r = await bob.room_leave(room_id)
    need(isinstance(r, nio.RoomLeaveResponse), "leave: %r" % (r,))
    r = await bob.sync(timeout=0, since=bob.next_batch)
    need(room_id in r.rooms.leave, "bob's sync does not show the leave")

    await alice.close()
    await bob.close()
    out["ok"] = True
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
