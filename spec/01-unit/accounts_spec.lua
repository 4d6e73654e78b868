-- Accounts: registration, password hashing, login, tokens stored hashed.
local accounts = require "loom.store.accounts"
local tmp = require "support.tmpdb"

describe("accounts", function()
  local path, store, acc

  before_each(function()
    store, path = tmp.open_store()
    acc = accounts.new(store.conn, { server_name = "example.org", iterations = 1000 })
  end)

  after_each(function() tmp.close_store(store, path) end)

  it("registers users, refusing taken and invalid names", function()
    assert.equal("@alice:example.org", assert(acc:register("alice", "pw")))
    local r, _, code = acc:register("alice", "other")
    assert.is_nil(r); assert.equal("user_in_use", code)
    for _, bad in ipairs { "Alice", "al ice", "", "é", ("a"):rep(250) } do
      r, _, code = acc:register(bad, "pw")
      assert.is_nil(r); assert.equal("invalid_username", code, bad)
    end
    assert.is_nil((acc:available("alice")))
    assert.equal("@bob:example.org", acc:available("bob"))
  end)

  it("hashes passwords with PBKDF2 and a per-user salt", function()
    local h1 = accounts.hash_password("secret", 1000)
    local h2 = accounts.hash_password("secret", 1000)
    assert.matches("^pbkdf2%-sha256%$1000%$", h1)
    assert.are_not.equal(h1, h2)
    assert.is_true(accounts.check_password("secret", h1))
    assert.is_false(accounts.check_password("Secret", h1))
    assert.is_false(accounts.check_password("secret", "garbage"))
    assert.is_false(accounts.check_password("secret", nil))
  end)

  it("logs in, authenticates tokens stored only as hashes, reuses devices, logs out", function()
    assert(acc:register("alice", "pw"))
    local r, _, code = acc:login("@alice:example.org", "wrong")
    assert.is_nil(r); assert.equal("forbidden", code)
    r, _, code = acc:login("@nobody:example.org", "pw")
    assert.is_nil(r); assert.equal("forbidden", code)
    local l1 = assert(acc:login("@alice:example.org", "pw", "DEV1"))
    assert.equal("DEV1", l1.device_id)
    assert.is_true(#l1.access_token >= 43)
    local u, d = acc:authenticate(l1.access_token)
    assert.equal("@alice:example.org", u); assert.equal("DEV1", d)
    -- the token itself is nowhere in the database
    assert.equal(0, store.conn:value("SELECT count(*) FROM access_tokens WHERE token_hash = ?", l1.access_token))
    local l2 = assert(acc:login("@alice:example.org", "pw", "DEV1"))
    assert.equal(1, store.conn:value("SELECT count(*) FROM devices WHERE user_id = '@alice:example.org'"))
    assert(acc:logout(l1.access_token))
    assert.is_nil((acc:authenticate(l1.access_token)))
    local l3 = assert(acc:login("@alice:example.org", "pw"))
    assert(acc:logout(l3.access_token, true))
    assert.is_nil((acc:authenticate(l2.access_token)))
    assert.is_nil((acc:authenticate(l3.access_token)))
    u, _, code = acc:authenticate("nonsense")
    assert.is_nil(u); assert.equal("unknown_token", code)
  end)
end)
