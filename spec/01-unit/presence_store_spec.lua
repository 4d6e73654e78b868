-- The presence store (loom.store.presence), the presence handler's timer
-- rules on a fake clock (loom.sync.presence) and the sync token's presence
-- part (loom.sync.token).
local sync_token = require "loom.sync.token"
local presence = require "loom.sync.presence"
local tmp = require "support.tmpdb"
local async = require "loom.async"

describe("presence store", function()
  local path, s

  before_each(function() s, path = tmp.open_store() end)
  after_each(function() tmp.close_store(s, path) end)

  it("keeps one presence per user, with a position per change", function()
    assert.equal(0, s:presence_position())
    assert.is_nil(s:presence_of("@a:x"))
    assert.equal(1, s:set_presence("@a:x", { state = "online", status_msg = "hi", last_active_ts = 10,
      currently_active = true }))
    assert.equal(2, s:set_presence("@b:x", { state = "offline", last_active_ts = 0 }))
    assert.equal(3, s:set_presence("@a:x", { state = "unavailable", status_msg = "hi", last_active_ts = 10 }))
    assert.equal(3, s:presence_position())
    local a = s:presence_of("@a:x")
    assert.same({ user_id = "@a:x", state = "unavailable", status_msg = "hi", last_active_ts = 10,
      currently_active = false, stream_id = 3 }, a)
    -- last_active_ts alone takes no position
    s:touch_presence("@a:x", 99)
    assert.equal(99, s:presence_of("@a:x").last_active_ts)
    assert.equal(3, s:presence_position())
    -- initial (since nil): those not offline; incremental: the changes in (since, to]
    local function users(list)
      local out = {}
      for i, r in ipairs(list) do out[i] = r.user_id end
      return out
    end
    assert.same({ "@a:x" }, users(s:presence_changes({ "@a:x", "@b:x" }, nil, 3)))
    assert.same({ "@b:x", "@a:x" }, users(s:presence_changes({ "@a:x", "@b:x" }, 1, 3)))
    assert.same({ "@b:x" }, users(s:presence_changes({ "@a:x", "@b:x" }, 1, 2)))
    assert.same({}, users(s:presence_changes({ "@c:x" }, 0, 3)))
    assert.same({ "@b:x", "@a:x" }, users(s:presence_changes(nil, 1, 3)))
    assert.same({ "@b:x", "@a:x" }, users(s:presence_changes(nil, 0, 3)))
    assert.same({}, users(s:presence_changes(nil, 3, 3)))
    assert.same({ "@a:x" }, users(s:presence_not_offline()))
  end)

  it("knows who shares a joined room", function()
    assert.same({}, s:users_sharing_rooms("@a:x"))
    assert.same({}, s:sharing_among("@a:x", { "@b:x" }))
    assert.is_false(s:share_room("@a:x", "@b:x"))
  end)

  it("publishes a change only when it commits", function()
    local notes = {}
    local unsubscribe = s:subscribe(function(note) notes[#notes + 1] = note end)
    s.conn:transaction(function()
      s:set_presence("@a:x", { state = "online", last_active_ts = 1, currently_active = true })
      assert.equal(0, #notes)
      return nil, "rolled back", "test"
    end)
    assert.equal(0, #notes)
    assert.equal(0, s:presence_position())
    s:set_presence("@a:x", { state = "online", last_active_ts = 1, currently_active = true })
    assert.equal(1, #notes)
    assert.same({ ["@a:x"] = 1 }, notes[1].presence)
    assert.same({}, notes[1].presence_rooms)
    unsubscribe()
  end)
end)

describe("presence timer rules", function()
  local path, s, clock, p

  before_each(function()
    s, path = tmp.open_store()
    clock = 1000000
    p = presence.new(s, { idle_ms = 1000, offline_ms = 3000, now = function() return clock end })
  end)
  after_each(function()
    p:close()
    async.finish_closing()     -- the timer's handle, before the loop goes
    tmp.close_store(s, path)
  end)

  it("goes unavailable when idle and offline when not syncing", function()
    p:set("@a:x", "online", "msg")
    assert.same({ presence = "online", currently_active = true, last_active_ago = 0, status_msg = "msg" },
      p:content("@a:x"))
    clock = clock + 999
    assert.equal(0, p:tick())
    clock = clock + 1
    assert.equal(1, p:tick())
    assert.same({ presence = "unavailable", currently_active = false, last_active_ago = 1000, status_msg = "msg" },
      p:content("@a:x"))
    clock = clock + 2000
    assert.equal(1, p:tick())
    assert.equal("offline", p:content("@a:x").presence)
    assert.equal(0, p:tick())
  end)

  it("never times out a user while a sync is in progress, and counts from its end", function()
    local done = p:syncing("@a:x", "online")
    assert.equal("online", p:content("@a:x").presence)
    clock = clock + 10000
    p:tick()
    assert.equal("unavailable", p:content("@a:x").presence)   -- idle, but syncing: not offline
    done()
    done()                                                     -- a second call changes nothing
    clock = clock + 2999
    p:tick()
    assert.equal("unavailable", p:content("@a:x").presence)
    clock = clock + 1
    p:tick()
    assert.equal("offline", p:content("@a:x").presence)
    -- set_presence=offline changes nothing and does not count as syncing
    local d2 = p:syncing("@a:x", "offline")
    assert.equal("offline", p:content("@a:x").presence)
    d2()
  end)

  it("reads a user's presence once while it stays in memory, and writes only changes", function()
    local reads, writes = 0, 0
    local presence_of, set_presence, touch = s.presence_of, s.set_presence, s.touch_presence
    s.presence_of = function(...) reads = reads + 1; return presence_of(...) end
    s.set_presence = function(...) writes = writes + 1; return set_presence(...) end
    s.touch_presence = function(...) writes = writes + 1; return touch(...) end
    p:syncing("@a:x", "online")()
    assert.equal(1, reads)
    assert.equal(1, writes)
    for _ = 1, 5 do
      clock = clock + 10
      p:syncing("@a:x", "online")()
      assert.equal("online", p:content("@a:x").presence)
    end
    assert.equal(1, reads)
    assert.equal(1, writes)
    -- half the idle time later: last_active moves, without a new position
    clock = clock + 600
    local pos = s:presence_position()
    p:syncing("@a:x", "online")()
    assert.equal(2, writes)
    assert.equal(pos, s:presence_position())
    assert.equal(clock, s:presence_of("@a:x").last_active_ts)
    assert.equal(0, p:content("@a:x").last_active_ago)
  end)

  it("answers offline and records nothing when disabled", function()
    local off = presence.new(s, { enabled = false })
    off:set("@a:x", "online")
    off:syncing("@a:x", "online")()
    assert.same({ presence = "offline" }, off:content("@a:x"))
    assert.is_nil(s:presence_of("@a:x"))
    assert.is_nil(off.timer)
    off:close()
    async.finish_closing()
  end)
end)

describe("sync token presence part", function()
  it("formats six parts (and the device-list part) and reads the old forms with presence 0", function()
    assert.equal("s7_1_2_3_4_5_0", sync_token.format { stream = 7, typing = 1, receipts = 2, to_device = 3,
      account_data = 4, presence = 5 })
    assert.equal(5, sync_token.parse("s7_1_2_3_4_5").presence)
    assert.equal(0, sync_token.parse("s7_1_2_3_4").presence)
    assert.equal(0, sync_token.parse("s7_1_2_3").presence)
    assert.equal(0, sync_token.parse("s7").presence)
    for _, bad in ipairs { "s7_0_0_0_0_-1", "s7_0_0_0_0_01", "s7_0_0_0_0_", "s7_0_0_0_0_x", "s7_0_0_0_0_1_2_3",
                           "s7_0_0_0_0_99999999999999999999" } do
      assert.is_nil(sync_token.parse(bad), bad)
    end
  end)
end)
