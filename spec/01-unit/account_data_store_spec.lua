-- The account-data store (loom.store.account_data) and the sync token's
-- account-data part (loom.sync.token).
local sync_token = require "loom.sync.token"
local tmp = require "support.tmpdb"

describe("account data store", function()
  local path, s

  before_each(function() s, path = tmp.open_store() end)
  after_each(function() tmp.close_store(s, path) end)

  it("keeps one content per user, room and type, with a position per change", function()
    assert.equal(0, s:account_data_position())
    assert.is_nil(s:account_data("@a:x", nil, "t"))
    assert.equal(1, s:set_account_data("@a:x", nil, "t", '{"v":1}'))
    assert.equal(2, s:set_account_data("@a:x", "!r:x", "t", '{"v":2}'))
    assert.equal(3, s:set_account_data("@b:x", nil, "t", '{"v":3}'))
    assert.equal(4, s:set_account_data("@a:x", nil, "t", '{"v":4}'))
    assert.equal(4, s:account_data_position())
    assert.equal('{"v":4}', s:account_data("@a:x", nil, "t"))
    assert.equal('{"v":2}', s:account_data("@a:x", "!r:x", "t"))
    assert.same({ { "!r:x", "t", '{"v":2}' }, { nil, "t", '{"v":4}' } }, s:account_data_changes("@a:x", nil, 4))
    assert.same({ { nil, "t", '{"v":4}' } }, s:account_data_changes("@a:x", 2, 4))
    assert.same({}, s:account_data_changes("@a:x", 4, 4))
    -- up to `to` only: a change after it waits for the next sync
    assert.same({ { "!r:x", "t", '{"v":2}' } }, s:account_data_changes("@a:x", 1, 3))
  end)

  it("publishes a change only when it commits", function()
    local notes = {}
    local unsubscribe = s:subscribe(function(note) notes[#notes + 1] = note end)
    local ok = pcall(s.transaction, s, function()
      s:set_account_data("@a:x", nil, "t", '{"v":1}')
      error("boom")
    end)
    assert.is_false(ok)
    assert.equal(0, s:account_data_position())
    assert.is_nil(s:account_data("@a:x", nil, "t"))
    assert.equal(0, #notes)
    s:set_account_data("@a:x", nil, "t", '{"v":1}')
    assert.equal(1, s:account_data_position())
    assert.equal(1, #notes)
    assert.equal(1, notes[1].users["@a:x"])
    assert.is_true(notes[1].account_data)
    unsubscribe()
  end)
end)

describe("sync token account-data part", function()
  it("formats the account-data part and parses the old forms with account_data 0", function()
    local text = sync_token.format { stream = 7, account_data = 3 }
    assert.equal("s7_0_0_0_3_0_0", text)
    assert.same({ stream = 7, typing = 0, receipts = 0, to_device = 0, account_data = 3, presence = 0,
      device_lists = 0 },
      sync_token.parse(text))
    assert.same({ stream = 7, typing = 0, receipts = 0, to_device = 0, account_data = 3, presence = 0,
      device_lists = 0 },
      sync_token.parse("s7_0_0_0_3"))
    assert.same({ stream = 7, typing = 0, receipts = 0, to_device = 0, account_data = 0, presence = 0,
      device_lists = 0 },
      sync_token.parse("s7_0_0_0"))
    assert.same({ stream = 7, typing = 0, receipts = 0, to_device = 0, account_data = 0, presence = 0,
      device_lists = 0 },
      sync_token.parse("s7"))
    assert.equal("s7", sync_token.to_store("s7_0_0_0_3"))
  end)

  it("refuses malformed tokens", function()
    for _, bad in ipairs { "s7_0_0_0_", "s7_0_0_0_-1", "s7_0_0_0_01", "s7_0_0_0_3_4_5_6", "s7_0_0_0_x",
                           "s7_0_0_0_99999999999999999999" } do
      assert.is_nil(sync_token.parse(bad), bad)
    end
  end)
end)
