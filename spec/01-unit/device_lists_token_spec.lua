-- The device-list part of the /sync token (loom.sync.token): the seventh
-- part, 0 in the older forms, checked like the others.
local sync_token = require "loom.sync.token"

describe("sync token device-list part", function()
  it("formats seven parts and reads the older forms with device_lists 0", function()
    assert.equal("s7_1_2_3_4_5_6", sync_token.format { stream = 7, typing = 1, receipts = 2, to_device = 3,
      account_data = 4, presence = 5, device_lists = 6 })
    assert.equal(6, sync_token.parse("s7_1_2_3_4_5_6").device_lists)
    assert.equal(5, sync_token.parse("s7_1_2_3_4_5_6").presence)
    for _, old in ipairs { "s7_1_2_3_4_5", "s7_1_2_3_4", "s7_1_2_3", "s7" } do
      assert.equal(0, sync_token.parse(old).device_lists, old)
    end
  end)

  it("refuses a malformed, negative or unreached device-list part", function()
    for _, bad in ipairs { "s7_0_0_0_0_0_-1", "s7_0_0_0_0_0_01", "s7_0_0_0_0_0_", "s7_0_0_0_0_0_x",
                           "s7_0_0_0_0_0_1_2", "s7_0_0_0_0_0_99999999999999999999" } do
      assert.is_nil(sync_token.parse(bad), bad)
    end
    local now = { stream = 7, typing = 0, receipts = 0, to_device = 0, account_data = 0, presence = 0,
      device_lists = 3 }
    assert.truthy(sync_token.check(sync_token.parse("s7_0_0_0_0_0_3"), now))
    assert.is_nil(sync_token.check(sync_token.parse("s7_0_0_0_0_0_4"), now))
  end)
end)
